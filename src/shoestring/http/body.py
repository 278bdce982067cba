"""`read_json`: a request's JSON body, size-capped and validated into a pydantic model.

    class Note(BaseModel):
        text: str = Field(max_length=10_000)

    note = await read_json(request, Note)

Every way a body can be wrong gets its own status and stable code, with a
message naming the fields at fault but never echoing their values (they may
be personal data): 413 `body_too_large`, 400 `invalid_json`, 422
`invalid_request`.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from shoestring.errors import HTTPError

M = TypeVar("M", bound=BaseModel)

MAX_JSON_BYTES = 1024 * 1024


async def read_json(request: Request, model: type[M], *, max_bytes: int = MAX_JSON_BYTES) -> M:
    """The body parsed as JSON and validated into `model`; HTTPError when it is not one."""
    too_large = HTTPError(413, f"The body is larger than {max_bytes} bytes.", code="body_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        data = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nested past Python's stack (a few thousand `[`): not a real body.
        raise HTTPError(400, "The body is not valid JSON.", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise HTTPError(422, problems, code="invalid_request") from None


def _not_json(constant: str) -> None:
    """NaN, Infinity and -Infinity: Python's json takes them, JSON has no such numbers."""
    raise ValueError(f"{constant} is not a JSON number")
