"""What a site serves for a URL path: the file, its headers, and how to cache it.

Resolution never leaves the site's root: the URL path is decoded, split on
`/`, and any segment that is empty-after-normalising, `.`, `..`, or holds a
NUL or a backslash makes the path unservable (404), before the filesystem is
touched. Symlinks inside a root may not point outside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

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

mimetypes.add_type("application/javascript", ".mjs")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("font/woff2", ".woff2")
mimetypes.add_type("application/manifest+json", ".webmanifest")


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path
    size: int
    mtime_ns: int
    etag: str
    last_modified: str
    content_type: str
    cache_control: str
    encodings: tuple[tuple[str, Path, int], ...]  # precompressed siblings: (encoding, path, size)
    body: bytes | None  # in memory when small
    headers: tuple[tuple[bytes, bytes], ...] = ()  # computed once: they go out with every response

    def matches(self, info: os.stat_result) -> bool:
        return info.st_mtime_ns == self.mtime_ns and info.st_size == self.size


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


def load(path: Path, info: os.stat_result) -> StaticFile:
    """Read a regular file's metadata (and small body) once; ETag is its content hash."""
    digest = hashlib.blake2b(digest_size=12)
    body = None
    with path.open("rb") as file:
        if info.st_size <= SMALL_FILE:
            body = file.read()
            digest.update(body)
        else:
            for chunk in iter(lambda: file.read(1024 * 1024), b""):
                digest.update(chunk)
    encodings = []
    for encoding, suffix in (("br", ".br"), ("gzip", ".gz")):
        sibling = path.with_name(path.name + suffix)
        try:
            sibling_info = sibling.stat()
        except OSError:
            continue
        if stat.S_ISREG(sibling_info.st_mode) and sibling_info.st_mtime_ns >= info.st_mtime_ns:
            encodings.append((encoding, sibling, sibling_info.st_size))
    name = path.name
    cache = IMMUTABLE if is_fingerprinted(name) else REVALIDATE
    etag = f'"{digest.hexdigest()}"'
    last_modified = formatdate(info.st_mtime, usegmt=True)
    headers = (
        (b"content-type", content_type(name).encode()),
        (b"etag", etag.encode()),
        (b"last-modified", last_modified.encode()),
        (b"cache-control", cache.encode()),
        (b"accept-ranges", b"bytes"),
        *([(b"vary", b"Accept-Encoding")] if encodings else []),
    )
    return StaticFile(
        path=path,
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        etag=etag,
        last_modified=last_modified,
        content_type=content_type(name),
        cache_control=cache,
        encodings=tuple(encodings),
        body=body,
        headers=headers,
    )


class FileIndex:
    """Metadata (and small bodies) of a root's files, revalidated by one stat(2) each."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._files: dict[str, StaticFile] = {}
        self._cached_bytes = 0

    def lookup(self, parts: list[str]) -> StaticFile | None:
        key = "/".join(parts)
        candidate = self.root.joinpath(*parts) if parts else self.root
        try:
            info = candidate.stat()
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(info.st_mode):
            return self.lookup([*parts, "index.html"])
        if not stat.S_ISREG(info.st_mode):
            return None
        known = self._files.get(key)
        if known is not None and known.matches(info):
            return known
        if not candidate.resolve().is_relative_to(self.root):
            return None  # a symlink pointing out of the root
        try:
            loaded = load(candidate, info)
        except OSError:
            return None
        if loaded.body is not None:
            if self._cached_bytes + loaded.size > MAX_CACHED_BYTES:
                loaded = dataclasses.replace(loaded, body=None)
            else:
                self._cached_bytes += loaded.size
        self._files[key] = loaded
        return loaded
