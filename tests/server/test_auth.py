"""API tokens and the IP allowlist: the pieces, then every route of the app over real HTTP."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute, iter_route_contexts

from ocrswarm.cli import cli
from ocrswarm.server.app import create_app
from ocrswarm.server.auth import (
    Role,
    RoleCheck,
    client_address,
    find_token,
    open_api_warning,
    parse_networks,
    token_digest,
)
from ocrswarm.server.settings import ServerSettings, TokenEntry, settings_from_mapping
from tests.server.conftest import ServerProcess
from tests.server.servers import TOKENS, bearer, running_server, tokens_config

PUBLIC_PATHS = frozenset({"/health"})
RANK = list(Role)


# --- tokens --------------------------------------------------------------------------------


def test_token_new_prints_a_token_and_the_configuration_that_admits_it() -> None:
    runner = CliRunner()

    outputs = [
        runner.invoke(cli, ["token", "new", "--name", "alice", "--role", "reader"])
        for _ in range(2)
    ]

    for output in outputs:
        assert output.exit_code == 0, output.output
    first, second = (output.output for output in outputs)
    token = first.splitlines()[0].removeprefix("token: ")
    assert token != second.splitlines()[0].removeprefix("token: ")
    config = tomllib.loads("[[" + first.partition("\n[[")[2])
    settings = settings_from_mapping({"tokens": config["server"]["tokens"]})
    assert settings.tokens == (TokenEntry("alice", token_digest(token), Role.READER),)
    assert token not in first.partition("\n[[")[2]


def test_token_new_refuses_an_unknown_role() -> None:
    output = CliRunner().invoke(cli, ["token", "new", "--name", "x", "--role", "root"])

    assert output.exit_code != 0
    assert "root" in output.output


def test_a_token_is_found_by_its_digest_only() -> None:
    entries = [TokenEntry(role.value, token_digest(token), role) for role, token in TOKENS.items()]

    assert find_token(TOKENS[Role.SUBMITTER], entries) == entries[list(Role).index(Role.SUBMITTER)]
    assert find_token("guess", entries) is None
    assert find_token(token_digest(TOKENS[Role.ADMIN]), entries) is None


# --- the caller's address ------------------------------------------------------------------

PROXY = "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", ["10.1.2.3"], [PROXY], "203.0.113.5"),  # not a proxy: header ignored
        (PROXY, [], [PROXY], PROXY),  # a proxy without the header is the caller
        (PROXY, ["10.1.2.3"], [PROXY], "10.1.2.3"),
        (PROXY, ["10.1.2.3, 203.0.113.9"], [PROXY], "203.0.113.9"),  # forged left part
        (PROXY, ["10.1.2.3", "203.0.113.9"], [PROXY], "203.0.113.9"),  # two header lines
        (PROXY, ["10.1.2.3, 192.168.7.7"], [PROXY, "192.168.0.0/16"], "10.1.2.3"),  # chain
        (PROXY, ["10.1.2.3, not-an-address"], [PROXY], None),
        ("::1", ["2001:db8::7"], ["::1"], "2001:db8::7"),
        (None, [], [], None),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(
    peer: str | None, forwarded: list[str], trusted: list[str], expected: str | None
) -> None:
    address = client_address(peer, forwarded, parse_networks(trusted))

    assert address == (ipaddress.ip_address(expected) if expected else None)


@pytest.mark.parametrize(
    ("host", "tokens", "warns"),
    [
        ("0.0.0.0", (), True),
        ("192.168.1.10", (), True),
        ("127.0.0.1", (), False),
        ("::1", (), False),
        ("localhost", (), False),
        ("0.0.0.0", (TokenEntry("ci", "0" * 64, Role.ADMIN),), False),
    ],
)
def test_serving_an_open_api_beyond_loopback_warns(
    host: str, tokens: tuple[TokenEntry, ...], warns: bool
) -> None:
    warning = open_api_warning(ServerSettings(host=host, tokens=tokens))

    assert (warning is not None) == warns
    if warning:
        assert host in warning


# --- every route of the app ----------------------------------------------------------------


def app_routes() -> list[tuple[str, str, Role | None]]:
    """(method, path, least role) of every route the server answers, HEAD aside."""
    found = []
    for context in iter_route_contexts(create_app(ServerSettings()).routes):
        route = context.original_route
        checks = _role_checks(route.dependant.dependencies) if isinstance(route, APIRoute) else []
        role = max(checks, key=RANK.index) if checks else None
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, context.path or "", role))
    return found


def _role_checks(dependencies: list[Any]) -> list[Role]:
    roles = []
    for dependency in dependencies:
        if isinstance(dependency.call, RoleCheck):
            roles.append(dependency.call.role)
        roles += _role_checks(dependency.dependencies)
    return roles


ROUTES = app_routes()
GUARDED = [(method, path, role) for method, path, role in ROUTES if path not in PUBLIC_PATHS]


def concrete(path: str) -> str:
    """The path with every parameter filled in (the token is checked before any lookup)."""
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "some-id" + path[path.index("}", start) + 1 :]
    return path


def test_every_route_but_health_needs_a_role() -> None:
    assert ("GET", "/workspace", Role.READER) in ROUTES
    assert [(method, path) for method, path, role in GUARDED if role is None] == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("token-server")
    with running_server(root, 'allow = ["127.0.0.0/8"]\n' + tokens_config()) as started:
        yield started


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def route_id(route: tuple[str, str, Role | None]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
def test_a_missing_or_unknown_token_is_401(
    client: httpx.Client, route: tuple[str, str, Role | None]
) -> None:
    method, path, _role = route

    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"X-Auth-Key": "nor-this"}):
        answer = client.request(method, concrete(path), headers=headers)

        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["detail"]


@pytest.mark.parametrize("route", [r for r in GUARDED if r[2] != Role.READER], ids=route_id)
def test_a_token_with_too_weak_a_role_is_403(
    client: httpx.Client, route: tuple[str, str, Role | None]
) -> None:
    method, path, role = route
    assert role is not None
    weaker = RANK[RANK.index(role) - 1]

    answer = client.request(method, concrete(path), headers=bearer(weaker))

    assert answer.status_code == 403, answer.text
    assert role.value in answer.json()["detail"]


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
def test_a_token_with_the_role_gets_past_the_check(
    client: httpx.Client, route: tuple[str, str, Role | None]
) -> None:
    method, path, role = route
    assert role is not None

    answer = client.request(method, concrete(path), headers=bearer(role))

    assert answer.status_code not in (401, 403), answer.text


def test_a_reader_cannot_upload_but_reads(client: httpx.Client) -> None:
    posted = client.post(
        "/workspace",
        content=b"PK",
        headers={**bearer(Role.READER), "Content-Type": "application/zip"},
    )
    listed = client.get("/workspace", headers={"X-Auth-Key": TOKENS[Role.READER]})

    assert posted.status_code == 403
    assert listed.status_code == 200


def test_health_needs_no_token(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200


# --- the IP allowlist over HTTP ------------------------------------------------------------


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Allows 10/8 only; the loopback peer is a trusted proxy."""
    root = tmp_path_factory.mktemp("proxied-server")
    config = 'allow = ["10.0.0.0/8"]\ntrusted_proxies = ["127.0.0.1"]\n'
    with running_server(root, config) as started:
        yield started


@pytest.fixture(scope="module")
def without_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Allows 10/8 only; no proxy is trusted."""
    root = tmp_path_factory.mktemp("direct-server")
    with running_server(root, 'allow = ["10.0.0.0/8"]\n') as started:
        yield started


@pytest.mark.parametrize("path", ["/workspace", "/health"])
def test_an_address_outside_the_allowlist_is_403_before_anything(
    behind_proxy: ServerProcess, path: str
) -> None:
    answer = httpx.get(behind_proxy.url + path)

    assert answer.status_code == 403
    assert "127.0.0.1" in answer.json()["detail"]


def test_a_trusted_proxy_forwards_an_allowed_client(behind_proxy: ServerProcess) -> None:
    answer = httpx.get(behind_proxy.url + "/workspace", headers={"X-Forwarded-For": "10.1.2.3"})

    assert answer.status_code == 200


def test_a_forged_forwarded_for_behind_the_proxy_is_403(behind_proxy: ServerProcess) -> None:
    forged = {"X-Forwarded-For": "10.1.2.3, 203.0.113.9"}

    answer = httpx.get(behind_proxy.url + "/workspace", headers=forged)

    assert answer.status_code == 403
    assert "203.0.113.9" in answer.json()["detail"]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(without_proxy: ServerProcess) -> None:
    answer = httpx.get(without_proxy.url + "/health", headers={"X-Forwarded-For": "10.1.2.3"})

    assert answer.status_code == 403
    assert "127.0.0.1" in answer.json()["detail"]
