"""Every error leaves the server as JSON `{"detail": …}` with a fitting status code.

Deliberate errors (the OcrswarmError hierarchy) carry their message to the client; an
unexpected exception is logged with its traceback and answered with a generic 500 — no
stack trace or internal detail ever reaches the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocrswarm.engine.workflow import WorkflowError
from ocrswarm.errors import (
    BagError,
    FormatError,
    NotFoundError,
    OcrswarmError,
    PageSelectionError,
    UnsafeInputError,
    UsageError,
)
from ocrswarm.processors.parameters import ParameterError

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides its status.
STATUS_OF_ERROR: tuple[tuple[type[OcrswarmError], int], ...] = (
    (NotFoundError, 404),
    (ParameterError, 400),
    (WorkflowError, 422),
    (PageSelectionError, 400),
    (UnsafeInputError, 403),
    (BagError, 400),
    (FormatError, 400),
    (UsageError, 422),
    (OcrswarmError, 400),
)


def status_of(error: OcrswarmError) -> int:
    """The HTTP status code of a deliberate error."""
    return next(status for kind, status in STATUS_OF_ERROR if isinstance(error, kind))


def error_response(status: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _ocrswarm_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OcrswarmError)
    return error_response(status_of(error), str(error))


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {
            "loc": list(problem.get("loc", ())),
            "msg": str(problem.get("msg", "")),
            "type": str(problem.get("type", "")),
        }
        for problem in error.errors()
    ]
    return error_response(422, problems)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal server error (see the server's log)")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer of `app` a JSON `{"detail": …}`."""
    app.add_exception_handler(OcrswarmError, _ocrswarm_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
