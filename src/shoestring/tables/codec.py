"""Items to JSON and back, exactly; keys and indexed values to sortable text.

Items are JSON documents plus two types JSON lacks, tagged so they come back
as what went in: bytes as `{"$bytes": base64}` and datetime as
`{"$datetime": iso-8601}`. A user's own dict key starting with `$` is escaped
with a second `$`, so no document can be mistaken for a tag.

Key and index values are encoded to text whose byte order is the value order
on both SQLite (BINARY collation) and PostgreSQL (COLLATE "C"): numbers sort
numerically and before strings, strings by code point.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from datetime import datetime
from typing import Any

from shoestring.tables.errors import InvalidItem

KeyValue = str | int | float
MAX_ITEM_BYTES = 400 * 1024  # as DynamoDB: an item is a record, not a blob store
MAX_SAFE_INT = 2**53


# One encoder for every item: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(item: dict[str, Any]) -> str:
    try:
        text = _JSON.encode(_encode(item))
    except ValueError as exc:
        raise InvalidItem(f"item is not storable: {exc}") from None
    if not text.isascii():
        _check_encodable(text, "the item")  # a lone surrogate: neither database stores it
    # UTF-8 takes at most 4 bytes a character: most items need no encoding to measure.
    if len(text) > MAX_ITEM_BYTES // 4 and (size := len(text.encode())) > MAX_ITEM_BYTES:
        raise InvalidItem(
            f"item is {size} bytes; the limit is {MAX_ITEM_BYTES}. Keep large data in storage and its key here."
        )
    return text


def loads(text: str) -> dict[str, Any]:
    item = _decode(json.loads(text))
    assert isinstance(item, dict)
    return item


# Values stored as they are, checked without a call per leaf.
_PLAIN = frozenset({str, int, bool, type(None)})

# Where a value sits in an item, built only for an error message: () for the
# item itself, else (parent, dict key or list index).
Path = tuple[Any, ...]


def _where(path: Path) -> str:
    steps: list[str] = []
    while path:
        path, step = path
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "item" + "".join(reversed(steps))


def _encode(value: Any, path: Path = ()) -> Any:
    if value.__class__ in _PLAIN:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidItem(f"{_where(path)} is {value}: only finite numbers can be stored")
        return value
    if isinstance(value, dict):
        encoded = {}
        for key, child in value.items():
            if not isinstance(key, str):
                raise InvalidItem(f"{_where(path)} has key {key!r}: dict keys must be str")
            encoded["$" + key if key.startswith("$") else key] = (
                child if child.__class__ in _PLAIN else _encode(child, (path, key))
            )
        return encoded
    if isinstance(value, list | tuple):
        return [
            child if child.__class__ in _PLAIN else _encode(child, (path, i))
            for i, child in enumerate(value)
        ]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, bool | int | str):  # subclasses: an IntEnum, a StrEnum
        return value
    raise InvalidItem(
        f"{_where(path)} is a {type(value).__name__}; items hold str, int, float, bool, None, "
        "lists, dicts, bytes and datetime"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(child) for child in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "$bytes":
            return base64.b64decode(payload)
        if tag == "$datetime":
            return datetime.fromisoformat(payload)
    return {
        (key[1:] if key.startswith("$") else key): _decode(child) for key, child in value.items()
    }


def sortable(value: Any, what: str) -> str:
    """Encode a key or indexed value as text that sorts like the value."""
    if isinstance(value, bool):
        raise InvalidItem(f"{what} is a bool; keys and indexed values are str or numbers")
    if isinstance(value, str):
        if "\0" in value:
            raise InvalidItem(f"{what} holds a NUL character, which keys and indexed values cannot")
        if not value.isascii():
            _check_encodable(value, what)
        return "s" + value
    if isinstance(value, int | float):
        if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
            raise InvalidItem(f"{what} = {value} is beyond ±2**53, where numbers lose precision")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidItem(f"{what} must be a finite number")
        # IEEE-754 bits, sign-flipped so unsigned byte order is numeric order.
        (bits,) = struct.unpack(">Q", struct.pack(">d", number + 0.0))
        bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
        return f"n{bits:016x}"
    raise InvalidItem(
        f"{what} is a {type(value).__name__}; keys and indexed values are str or numbers"
    )


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidItem(
            f"{what} is not valid Unicode text ({exc.reason} at character {exc.start})"
        ) from None


def prefix_range(prefix: str) -> tuple[str, str]:
    """Bounds [low, high) of the encoded strings that start with `prefix`."""
    low = sortable(prefix, "begins_with")
    return low, low + "\U0010ffff"
