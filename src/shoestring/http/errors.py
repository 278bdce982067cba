"""JSON error responses: `{"error": {"code", "message", "request_id"}}`.

Handlers raise `HTTPError`; routing errors (404, 405) and unhandled
exceptions get the same shape, so clients parse one format and a person
reading it can quote the request id. No traceback ever reaches a client.
RequestLogMiddleware, around every request, turns exceptions into these.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from shoestring.errors import HTTPError, _default_code
from shoestring.http.responses import JSONResponse
from shoestring.logs import request_id_var

INTERNAL_ERROR_MESSAGE = "The server failed to handle this request; quote the request id."
error_log = logging.getLogger("shoestring.http")


def error_body(status: int, code: str, message: str) -> dict[str, dict[str, str | None]]:
    return {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status)


def http_error_response(exc: Exception, scope: Scope) -> Response | None:
    """The answer to an exception that stands for an HTTP error; None for any other."""
    if isinstance(exc, HTTPError):
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    if not isinstance(exc, HTTPException):
        return None
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 404:
        message = f"No route for {scope['method']} {scope['path']}."
    elif exc.status_code == 405:
        message = f"{scope['method']} is not allowed here; see the Allow header."
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, _default_code(exc.status_code), message)
    response.headers.update(exc.headers or {})
    return response


def internal_error(exc: Exception, scope: Scope) -> Response:
    """Log an unhandled exception (the traceback stays in the log) and answer a JSON 500."""
    error_log.error("unhandled error in %s %s", scope["method"], scope["path"], exc_info=exc)
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)
