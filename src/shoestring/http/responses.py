"""What a handler may return, and the Response each becomes."""

from __future__ import annotations

import json
from typing import Any

from starlette import responses
from starlette.responses import PlainTextResponse, Response

# Starlette's JSONResponse passes its options to `json.dumps`, which builds a
# new encoder for every response when options are given: a third of the cost
# of a small JSON response. One encoder, made once, writes the same bytes.
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse, byte for byte, with its encoder made once."""

    def render(self, content: Any) -> bytes:
        return _encode_json(content).encode("utf-8")


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
