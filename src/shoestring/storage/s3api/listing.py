"""What S3's listings share: the page size, `encoding-type=url`, CommonPrefixes."""

from __future__ import annotations

from urllib.parse import quote

from shoestring.storage.s3api import xml
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.request import S3Request

MAX_PAGE = 1000  # S3 answers at most this many entries, whatever is asked


def page_size(request: S3Request, parameter: str) -> int:
    """The `max-keys`/`max-uploads` asked for, at most MAX_PAGE; InvalidArgument if not a count."""
    try:
        value = int(request.query.get(parameter, str(MAX_PAGE)))
    except ValueError:
        raise S3Error("InvalidArgument", f"{parameter} must be a number") from None
    if value < 0:
        raise S3Error("InvalidArgument", f"{parameter} must not be negative")
    return min(value, MAX_PAGE)


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
