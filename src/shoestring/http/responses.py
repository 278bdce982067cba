"""What a handler may return, and the Response each becomes."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response


def to_response(result: Any, *, handler_name: str) -> Response:
    """Response as-is; dict or list -> JSON; str -> text; bytes -> octet-stream; None -> 204."""
    if isinstance(result, Response):
        return result
    if isinstance(result, dict | list):
        return JSONResponse(result)
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, bytes):
        return Response(result, media_type="application/octet-stream")
    if result is None:
        return Response(status_code=204)
    raise TypeError(
        f"handler {handler_name} returned {type(result).__name__}; "
        "return a Response, dict, list, str, bytes or None"
    )
