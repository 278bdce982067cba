"""What S3's listings share: the page size, `encoding-type=url`, CommonPrefixes."""

from __future__ import annotations

from urllib.parse import quote

from shoestring.storage.s3api import xml
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.request import S3Request

MAX_PAGE = 1000  # S3 answers at most this many entries, whatever is asked


def page_size(request: S3Request, parameter: str) -> int:
    """The `max-keys`/`max-uploads`/`max-parts` asked for, at most MAX_PAGE.

    InvalidArgument if it is not a count (as S3: never silently the default).
    """
    return min(count(request, parameter, MAX_PAGE), MAX_PAGE)


def count(request: S3Request, parameter: str, default: int) -> int:
    """A non-negative integer query parameter, `default` if absent; InvalidArgument if not one."""
    text = request.query.get(parameter)
    if text is None:
        return default
    if text.startswith("-") and text[1:].isdigit():
        raise S3Error("InvalidArgument", f"{parameter} must not be negative")
    # isdecimal and ASCII: int() would also take " 5", "+5", "1_000" and other digits.
    if not (text.isascii() and text.isdecimal()) or len(text) > 18:
        raise S3Error("InvalidArgument", f"{parameter} must be a non-negative integer")
    return int(text)


def encoding(request: S3Request) -> tuple[bool, str]:
    """(whether to URL-encode keys, the EncodingType to answer) of `encoding-type`."""
    value = request.query.get("encoding-type")
    if value not in (None, "url"):
        raise S3Error("InvalidArgument", "encoding-type must be url")
    return value == "url", value or ""


def encode(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def common_prefixes(prefixes: list[str], url: bool) -> list[str]:
    return [xml.node("CommonPrefixes", xml.text("Prefix", encode(p, url))) for p in prefixes]
