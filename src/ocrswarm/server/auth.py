"""Who may call what: API tokens with roles, and an IP allowlist.

INTERFACE STUB — the security engineer replaces the body of `require`; its signature and
`Role` stay. Every route declares the least role it needs with `Depends(require(Role.X))`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from fastapi import Request


class Role(StrEnum):
    """Roles in increasing power: each one may do everything the ones before it may."""

    READER = "reader"  # read jobs, logs, workspaces, metrics
    SUBMITTER = "submitter"  # also run processors and workflows, upload workspaces, cancel
    ADMIN = "admin"  # also delete workspaces and manage the server


def require(role: Role) -> Callable[[Request], None]:
    """A FastAPI dependency that admits a request only if its caller holds `role` or more."""

    def check(request: Request) -> None:
        return None

    return check
