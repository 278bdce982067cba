"""What a site serves for a URL path: the file, its headers, and how to cache it.

A site's files come from a `SiteSource`: a directory (directory.py) or the
live release in a storage bucket (bucket_source.py). Per request, SiteApp
asks the source for the live release once (`current()`) and answers wholly
from it; everything about HTTP (validators, ranges, encodings, SPA routing)
lives in SiteApp, so both kinds of site behave the same.

URL paths are split by `safe_parts` before any source sees them: a segment
that is `..`, or holds a NUL or a backslash, makes the path unservable
(404), so a lookup can only name something below the site's root or prefix.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

from shoestring.errors import ShoestringError

# Bodies up to this size are kept in memory after their first read (within
# MAX_CACHED_BYTES per site): a 1 MiB file streamed through worker threads
# served at 0.26 x nginx here, from memory at well over half.
SMALL_FILE = 2 * 1024 * 1024
MAX_CACHED_BYTES = 64 * 1024 * 1024  # per site

# `app.3f2a9c1b.js`, `index-DiwrgTda.js`, `main.8f14e45f.chunk.css`: a name
# segment of 8+ characters mixing letters and digits, the mark of a content hash.
_FINGERPRINT = re.compile(
    r"[.-](?=[A-Za-z_-]*\d)(?=[\d_-]*[A-Za-z])[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+$"
)
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Precompressed siblings a site may hold beside a file, in order of preference.
SIBLINGS = (("br", ".br"), ("gzip", ".gz"))

mimetypes.add_type("application/javascript", ".mjs")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("font/woff2", ".woff2")
mimetypes.add_type("application/manifest+json", ".webmanifest")


class SiteUnavailable(ShoestringError):
    """The site's files cannot be read right now (its storage failed); answered with 503."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One stored form of a file: the file itself, or a precompressed sibling.

    Each has its own strong ETag, a hash of its bytes: a `br` and a `gzip`
    response are different representations (RFC 9110 §8.8.3), and a cache
    must not revalidate or combine one with the other.
    """

    location: str  # where its source reads it: a file path, or an object key
    size: int
    etag: str  # quoted: `"3f2a..."`
    encoding: str | None = None  # `br`, `gzip`; None for the file itself
    body: bytes | None = None  # in memory when small


@dataclass(frozen=True, slots=True)
class StaticFile:
    plain: Variant
    mtime_ns: int
    last_modified: str
    content_type: str
    cache_control: str
    encodings: tuple[Variant, ...]  # precompressed siblings, in order of preference
    # Computed once: they go out with every response (all but the variant's ETag).
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def size(self) -> int:
        return self.plain.size

    @property
    def variants(self) -> tuple[Variant, ...]:
        return (self.plain, *self.encodings)


class SiteFiles(Protocol):
    """One release of a site, as SiteApp reads it during a request."""

    async def lookup(self, parts: list[str]) -> StaticFile | None:
        """The file at `parts` (from `safe_parts`), a directory's index.html, or None."""
        ...

    async def open(self, variant: Variant, start: int, length: int) -> AsyncGenerator[bytes, None]:
        """`length` bytes of `variant` from `start`, in chunks; FileGone if it vanished."""
        ...


class SiteSource(Protocol):
    """Where a site's files come from: a directory, or the live release in a bucket."""

    async def current(self) -> SiteFiles | None:
        """The live release (None before the first publish); raises SiteUnavailable."""
        ...


class FileGone(ShoestringError):
    """A file listed in the release could not be opened any more; answered with 404."""


def describe(
    name: str, *, plain: Variant, encodings: tuple[Variant, ...], mtime_ns: int
) -> StaticFile:
    """A file's Last-Modified, type and cache policy, and the headers every answer carries."""
    cache = IMMUTABLE if is_fingerprinted(name) else REVALIDATE
    last_modified = formatdate(mtime_ns / 1_000_000_000, usegmt=True)
    kind = content_type(name)
    headers = (
        (b"content-type", kind.encode()),
        (b"last-modified", last_modified.encode()),
        (b"cache-control", cache.encode()),
        (b"accept-ranges", b"bytes"),
        *([(b"vary", b"Accept-Encoding")] if encodings else []),
    )
    return StaticFile(
        plain=plain,
        mtime_ns=mtime_ns,
        last_modified=last_modified,
        content_type=kind,
        cache_control=cache,
        encodings=encodings,
        headers=headers,
    )


def safe_parts(url_path: str) -> list[str] | None:
    """The path's segments, or None if it could name anything outside the root."""
    parts = []
    for part in url_path.split("/"):
        if part in ("", "."):
            continue
        if part == ".." or "\x00" in part or "\\" in part or part.startswith("~"):
            return None
        parts.append(part)
    return parts


def is_fingerprinted(name: str) -> bool:
    return _FINGERPRINT.search(name) is not None


def content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    guessed = guessed or "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return f"{guessed}; charset=utf-8"
    return guessed
