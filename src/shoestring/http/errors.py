"""JSON error responses: `{"error": {"code", "message", "request_id"}}`.

Handlers raise `HTTPError`; routing errors (404, 405) and unhandled
exceptions get the same shape, so clients parse one format and a person
reading it can quote the request id. No traceback ever reaches a client.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shoestring.errors import HTTPError, _default_code
from shoestring.logs import request_id_var

INTERNAL_ERROR_MESSAGE = "The server failed to handle this request; quote the request id."


def error_body(status: int, code: str, message: str) -> dict[str, dict[str, str | None]]:
    return {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    response = error_response(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers)
    return response


async def starlette_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed here; see the Allow header."
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, _default_code(exc.status_code), message)
    response.headers.update(exc.headers or {})
    return response


# Unhandled exceptions are answered (and logged once) by RequestLogMiddleware.
EXCEPTION_HANDLERS = {
    HTTPError: http_error,
    HTTPException: starlette_http_exception,
}
