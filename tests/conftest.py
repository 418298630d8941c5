"""Fixtures shared by the whole suite: real data, rendered pages, and honest skips."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.render import render_page

REPO = Path(__file__).resolve().parent.parent


def require_or_skip(reason: str) -> None:
    """Skip with a visible reason, or fail when CI demands every component be present.

    `.ci/run` sets OCRSWARM_REQUIRE_ALL=1 so that CI can never pass by skipping.
    """
    if os.environ.get("OCRSWARM_REQUIRE_ALL") == "1":
        pytest.fail(f"required component missing (OCRSWARM_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


def _shared(part: str) -> Path:
    """A folder of ../shared (or $OCRSWARM_SHARED); a skip, not a failure, when absent.

    The project never needs ../shared to run; tests use its real data when it is there.
    """
    folder = Path(os.environ.get("OCRSWARM_SHARED", REPO.parent / "shared")) / part
    if not folder.is_dir():
        pytest.skip(f"shared {part} not present at {folder}")
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real OCR-D scans in ../shared/data."""
    return _shared("data")


@pytest.fixture(scope="session")
def shared_spec() -> Path:
    """The OCR-D specs in ../shared/spec."""
    return _shared("spec")


@pytest.fixture
def image_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a folder of rendered page images with known text, named for natural sort."""

    def make(
        count: int = 3,
        *,
        suffix: str = ".png",
        name: str = "page_{n}",
        size: tuple[int, int] = (1240, 1754),
    ) -> Path:
        folder = tmp_path / "scans"
        folder.mkdir(exist_ok=True)
        for n in range(1, count + 1):
            render_page(
                folder / (name.format(n=n) + suffix),
                [f"Page {n} of the sample", "The quick brown fox jumps", "over the lazy dog."],
                size=size,
            )
        return folder

    return make


AMQP_ENV = "OCRSWARM_TEST_AMQP_URL"


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ virtual host of its own for this session (so that concurrent runs never
    share a queue), on the broker named by $OCRSWARM_TEST_AMQP_URL; deleted afterwards.
    Needs `rabbitmqctl` on this machine (the broker's own)."""
    import secrets
    import shutil
    import subprocess
    from urllib.parse import quote, urlsplit, urlunsplit

    server = os.environ.get(AMQP_ENV)
    if not server:
        require_or_skip(f"${AMQP_ENV} is not set: no RabbitMQ to test the queue backend on")
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        require_or_skip("rabbitmqctl is not installed: cannot make a RabbitMQ vhost")
    assert server is not None and ctl is not None
    vhost = f"ocrswarm-test-{secrets.token_hex(6)}"
    parts = urlsplit(server)
    user = parts.username or "guest"

    def ctl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60, check=False)

    made = ctl_run("add_vhost", vhost)
    if made.returncode != 0:
        require_or_skip(f"RabbitMQ is unreachable (rabbitmqctl add_vhost): {made.stderr.strip()}")
    ctl_run("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    ctl_run("delete_vhost", vhost)
