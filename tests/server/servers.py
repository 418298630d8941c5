"""Module-wide servers with a given configuration (tokens, allowlists, small size limits).

Starting a server costs about a second, so tests that only read what a configuration does
share one server per module; `tokens_config` makes the `[[server.tokens]]` tables.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ocrswarm.server.auth import Role, token_digest
from tests.server.conftest import ServerProcess

# One token per role; the tokens are made up for the tests, only their digests are configured.
TOKENS: Mapping[Role, str] = {role: f"test-token-for-{role.value}" for role in Role}


def tokens_config(tokens: Mapping[Role, str] = TOKENS) -> str:
    return "".join(
        f'[[server.tokens]]\nname = "{role.value}-user"\n'
        f'sha256 = "{token_digest(token)}"\nrole = "{role.value}"\n'
        for role, token in tokens.items()
    )


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@contextmanager
def running_server(root: Path, config: str = "", *, workers: int = 1) -> Iterator[ServerProcess]:
    """A started server whose data dir is under `root` (also its data root)."""
    server = ServerProcess(root / "data", [root], workers=workers, extra_config=config)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop(signal.SIGKILL)
