"""Who may call what: API tokens with roles, and an IP allowlist.

Tokens are stored only as SHA-256 digests (`ocrswarm token new` prints a token and its
digest). As soon as one token is configured, every route that declares
`Depends(require(Role.X))` demands one, sent as `Authorization: Bearer <token>` or as docr's
`X-Auth-Key: <token>`: none or an unknown one is 401, a known one whose role is too weak 403.
With no token configured the API is open, which is only sensible on loopback (see
`open_api_warning`). `/health` declares no role and is therefore never asked for a token.

The IP allowlist (`IpAllowlist`, ASGI middleware) runs before everything else, `/health`
included: a network that is not allowed learns nothing, not even that the server is up. The
caller's address is the TCP peer; `X-Forwarded-For` is believed only when the peer is a
configured trusted proxy, and then only up to the right-most address that is not itself a
trusted proxy (everything left of that was written by the client and may be forged).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from ocrswarm.server.settings import ServerSettings, TokenEntry

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Role(StrEnum):
    """Roles in increasing power: each one may do everything the ones before it may."""

    READER = "reader"  # read jobs, logs, workspaces, metrics, download workspace files
    WORKER = "worker"  # also upload the output files of a page task it holds the lease of
    SUBMITTER = "submitter"  # also run processors and workflows, upload workspaces, cancel
    ADMIN = "admin"  # also delete workspaces and manage the server


_RANK = {Role.READER: 0, Role.WORKER: 1, Role.SUBMITTER: 2, Role.ADMIN: 3}
_TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh random API token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored in the configuration."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_token(presented: str, tokens: Iterable[TokenEntry]) -> TokenEntry | None:
    """The configured token whose digest matches `presented`, else None.

    Every entry is compared, in constant time, so the answer's timing tells nothing about
    which entry (or how much of a digest) matched.
    """
    digest = token_digest(presented).encode("ascii")
    found = None
    for entry in tokens:
        if hmac.compare_digest(digest, entry.sha256.encode("ascii")):
            found = entry
    return found


def presented_token(request: Request) -> str | None:
    """The token the request carries: `Authorization: Bearer …`, else `X-Auth-Key`."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = request.headers.get("x-auth-key", "").strip()
    return key or None


def request_settings(request: Request) -> ServerSettings:
    """The settings of the app serving `request` (create_app puts them on app.state)."""
    settings: ServerSettings = request.app.state.settings
    return settings


def require(role: Role) -> Callable[[Request], None]:
    """A FastAPI dependency that admits a request only if its caller holds `role` or more."""
    return RoleCheck(role)


class RoleCheck:
    """The dependency `require` makes; it keeps its role so tests can list what needs what."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, request: Request) -> None:
        tokens = request_settings(request).tokens
        if not tokens:
            return
        token = presented_token(request)
        if token is None:
            raise HTTPException(
                status_code=401,
                detail="an API token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="ocrswarm"'},
            )
        entry = find_token(token, tokens)
        if entry is None:
            raise HTTPException(
                status_code=401,
                detail="the API token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="ocrswarm", error="invalid_token"'},
            )
        if _RANK[entry.role] < _RANK[self.role]:
            raise HTTPException(
                status_code=403,
                detail=f"the token {entry.name!r} has the role {entry.role.value}; "
                f"this needs {self.role.value}",
            )
        request.state.token_name = entry.name


def is_loopback_host(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_api_warning(settings: ServerSettings) -> str | None:
    """The warning `ocrswarm serve` must print before it starts, or None when safe.

    No token configured and a non-loopback address means anyone who can reach the port may
    run processors and delete workspaces.
    """
    if settings.tokens or is_loopback_host(settings.host):
        return None
    return (
        f"WARNING: no API token is configured and the server listens on {settings.host}: "
        "anyone who can reach it may submit jobs and delete workspaces. Create a token with "
        "`ocrswarm token new` and add it to [[server.tokens]] in the configuration."
    )


# --- the IP allowlist ----------------------------------------------------------------------


def parse_networks(cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """CIDR strings (or single addresses) as networks."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _in_any(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _parse_address(text: str) -> IpAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IpNetwork]
) -> IpAddress | None:
    """The caller's address, or None when it cannot be told (then it is refused).

    `forwarded_for` holds the X-Forwarded-For header values in order. They count only when
    the peer is a trusted proxy; then the list is read from the right and the first address
    that is not a trusted proxy is the client. A garbled entry ends the walk: nothing left
    of it can be trusted.
    """
    address = _parse_address(peer) if peer else None
    if address is None or not _in_any(address, trusted_proxies):
        return address
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = _parse_address(hop)
        if hop_address is None:
            return None
        if not _in_any(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address


class IpAllowlist:
    """ASGI middleware: 403 with a JSON `detail` for callers outside the allowed networks.

    With no networks configured every caller is allowed.
    """

    def __init__(self, app: ASGIApp, *, allow: Iterable[str], trusted_proxies: Iterable[str]):
        self.app = app
        self.allow = parse_networks(allow)
        self.trusted_proxies = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.allow:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"x-forwarded-for"
        ]
        address = client_address(peer, forwarded, self.trusted_proxies)
        if address is not None and _in_any(address, self.allow):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = str(address) if address is not None else "an unknown address"
        body = json.dumps({"detail": f"requests from {shown} are not allowed"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
