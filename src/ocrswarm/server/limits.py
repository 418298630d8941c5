"""Request size limits, as ASGI middleware in front of every route.

A request body may be at most `max_request_bytes` (JSON, multipart workflow texts), except
an OCRD-ZIP upload (POST or PUT of `/workspace…`) and a worker's output file (PUT of
`/workspace/{id}/files/…`), which may be `max_upload_bytes` and are streamed to disk by
their routes. A body that declares a larger Content-Length is refused with
413 before a byte of it is read; one that turns out larger while it arrives (chunked, or a
lying header) makes the next read raise `RequestTooLarge`, which the route's cleanup sees and
which ends as 413 too. Every 413 carries a JSON `detail`.
"""

from __future__ import annotations

import json
import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_UPLOAD_PATH = re.compile(r"/workspace(/[^/]+)?/?")
_UPLOAD_METHODS = frozenset({"POST", "PUT"})
_FILE_PATH = re.compile(r"/workspace/[^/]+/files/.+")


class RequestTooLarge(HTTPException):
    """A request body over its limit (an HTTPException, so FastAPI passes it on unchanged)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(status_code=413, detail=f"{what} is larger than {limit} bytes")
        self.limit = limit


def is_upload(scope: Scope) -> bool:
    """Whether the request uploads a workspace or a file (the only bodies allowed to be
    large)."""
    method, path = scope.get("method"), scope.get("path", "")
    if method == "PUT" and _FILE_PATH.fullmatch(path):
        return True
    return method in _UPLOAD_METHODS and bool(_UPLOAD_PATH.fullmatch(path))


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; None if absent or not a number."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestSizeLimit:
    """ASGI middleware enforcing the two body limits of the module docstring."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload(scope)
        limit = self.max_upload_bytes if upload else self.max_request_bytes
        what = "the upload" if upload else "the request body"
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await send_413(send, RequestTooLarge(limit, what))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit, what)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestTooLarge as error:
            if started:
                raise
            await send_413(send, error)


async def send_413(send: Send, error: RequestTooLarge) -> None:
    """Answer 413 with the error's JSON detail, and close the connection (the rest is unread)."""
    body = json.dumps({"detail": error.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
