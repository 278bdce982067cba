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


def _fingerprint_pattern() -> str:
    """The regex of a fingerprinted file name, in the syntax both `re` and RE2 (Caddy) read.

    A name is fingerprinted when a segment delimited by `.` or `-` and
    followed by the extension(s) is a bundler's content hash:

    - hex, 8 or more characters, holding both a digit and a letter a-f: webpack
      and CRA (`main.8f14e45f.chunk.css`, `app.[contenthash].js`), Parcel
      (`index.8f14e45f.js`);
    - exactly 8 characters of `[A-Za-z0-9_-]` in which a lowercase letter or a
      digit is directly followed by an uppercase letter: Vite and Rollup
      (`index-DiwrgTda.css`, `index-C-ZvV9Jy.js`), esbuild (`app-5KLWJ4BX.js`).

    Words and numbers are not hashes: `report-2024final.pdf`,
    `photo-20240101.jpg`, `logo-original.png` are not matched. RE2 has no
    lookahead, so "contains both" is spelt out as the offsets at which the
    first digit/letter (or lower/upper) pair may stand.
    """
    hex_char, pair = "[0-9a-f]", "(?:[0-9][a-f]|[a-f][0-9])"
    hex_runs = [f"{_times(hex_char, i)}{pair}{hex_char}{{{6 - i},}}" for i in range(6)]
    hex_runs.append(f"{hex_char}{{6,}}{pair}{hex_char}*")
    base64, hump = "[A-Za-z0-9_-]", "[a-z0-9][A-Z]"
    base64_runs = [f"{_times(base64, i)}{hump}{_times(base64, 6 - i)}" for i in range(7)]
    return rf"[^/][.-](?:{'|'.join(hex_runs + base64_runs)})(?:\.[A-Za-z0-9]+)+$"


def _times(pattern: str, count: int) -> str:
    return "" if count == 0 else pattern if count == 1 else f"{pattern}{{{count}}}"


# Used as it is by the Caddyfile (caddy.py), so Caddy and SiteApp agree by construction.
FINGERPRINT_PATTERN = _fingerprint_pattern()
_FINGERPRINT = re.compile(FINGERPRINT_PATTERN)
# HTML is never cached as immutable, whatever its name: it names the assets.
HTML_SUFFIXES = (".html", ".htm")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Precompressed siblings a site may hold beside a file, in order of preference.
SIBLINGS = (("br", ".br"), ("gzip", ".gz"))

mimetypes.add_type("application/javascript", ".mjs")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("font/woff2", ".woff2")
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("application/zstd", ".zst")
# What a compressed file is sent as (Caddy says `application/gzip` for `.gz`);
# mimetypes names the coding, and the type of what is inside.
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}


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
        """The regular file at `parts` (from `safe_parts`), or None (for a directory too)."""
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
    """Whether `name` carries a content hash (see `_fingerprint_pattern`); never for HTML."""
    if name.lower().endswith(HTML_SUFFIXES):
        return False
    return _FINGERPRINT.search(name) is not None


def content_type(name: str) -> str:
    """The Content-Type of the file `name`, as it is stored.

    A compressed file (`archive.tar.gz`, `data.json.gz`) is sent as the
    archive it is, never as what it holds with a Content-Encoding: that is
    only for the precompressed siblings SiteApp picks by Accept-Encoding.
    """
    guessed, encoding = mimetypes.guess_type(name)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    guessed = guessed or "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return f"{guessed}; charset=utf-8"
    return guessed
