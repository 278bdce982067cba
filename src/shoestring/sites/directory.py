"""Sites served from a directory: `root = "web/dist"`, or the live published release.

Resolution never leaves the root: `safe_parts` has already refused `..` and
friends before the filesystem is touched, and symlinks inside a root may not
point outside it. Each file is revalidated by one stat(2) per request, so
edits to a `root` directory show up at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO

import anyio

from shoestring.sites.files import (
    MAX_CACHED_BYTES,
    SIBLINGS,
    SMALL_FILE,
    FileGone,
    StaticFile,
    Variant,
    describe,
)

STREAM_CHUNK = 1024 * 1024


def load(path: Path, info: os.stat_result) -> StaticFile:
    """Read a regular file's metadata (and small body) once, and its siblings'."""
    encodings = []
    for encoding, suffix in SIBLINGS:
        sibling = path.with_name(path.name + suffix)
        try:
            sibling_info = sibling.stat()
        except OSError:
            continue
        # An older sibling is a leftover of a previous version of the file.
        if stat.S_ISREG(sibling_info.st_mode) and sibling_info.st_mtime_ns >= info.st_mtime_ns:
            encodings.append(_variant(sibling, sibling_info.st_size, encoding))
    return describe(
        path.name,
        plain=_variant(path, info.st_size, None),
        encodings=tuple(encodings),
        mtime_ns=info.st_mtime_ns,
    )


def _variant(path: Path, size: int, encoding: str | None) -> Variant:
    """The file at `path`; its ETag is a hash of its bytes, kept in memory when small."""
    digest = hashlib.blake2b(digest_size=12)
    body = None
    with path.open("rb") as file:
        if size <= SMALL_FILE:
            body = file.read()
            digest.update(body)
        else:
            for chunk in iter(lambda: file.read(1024 * 1024), b""):
                digest.update(chunk)
    size = len(body) if body is not None else size  # what is sent is what was read
    return Variant(str(path), size, f'"{digest.hexdigest()}"', encoding, body)


def _held(file: StaticFile) -> int:
    return sum(len(variant.body) for variant in file.variants if variant.body is not None)


def _without_bodies(file: StaticFile) -> StaticFile:
    return dataclasses.replace(
        file,
        plain=dataclasses.replace(file.plain, body=None),
        encodings=tuple(dataclasses.replace(v, body=None) for v in file.encodings),
    )


class FileIndex:
    """Metadata (and small bodies) of a root's files, revalidated by one stat(2) each."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._prefix = f"{self.root}/"
        self._files: dict[str, StaticFile] = {}
        self._cached_bytes = 0

    async def lookup(self, parts: list[str]) -> StaticFile | None:
        # Blocking calls on the event loop, on purpose: a stat costs less than
        # a thread hop, and bodies read here are small (SMALL_FILE) and read once.
        # A str path for the stat every request makes: pathlib doubled its cost.
        key = "/".join(parts)
        try:
            info = os.stat(self._prefix + key)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None  # a directory is SiteApp's to answer (its index.html, or a redirect)
        known = self._files.get(key)
        if known is not None and known.mtime_ns == info.st_mtime_ns and known.size == info.st_size:
            return known
        candidate = self.root.joinpath(*parts)
        if not candidate.resolve().is_relative_to(self.root):
            return None  # a symlink pointing out of the root
        try:
            loaded = load(candidate, info)
        except OSError:
            return None
        held = _held(loaded)
        if self._cached_bytes + held > MAX_CACHED_BYTES:
            loaded = _without_bodies(loaded)
        else:
            self._cached_bytes += held
        self._files[key] = loaded
        return loaded

    async def open(self, variant: Variant, start: int, length: int) -> AsyncGenerator[bytes, None]:
        try:
            file = await anyio.to_thread.run_sync(Path(variant.location).open, "rb")
        except OSError as exc:
            raise FileGone(variant.location) from exc
        return _read(file, start, length)


async def _read(file: BinaryIO, start: int, length: int) -> AsyncGenerator[bytes, None]:
    # Large files only: a thread per chunk keeps the event loop free while
    # the disk reads, and memory stays at one chunk per response.
    try:
        await anyio.to_thread.run_sync(file.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(file.read, min(STREAM_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        await anyio.to_thread.run_sync(file.close)


class DirectorySource:
    """A site's files in a directory; `root` is called per request, as publishing moves it."""

    def __init__(self, root: Callable[[], Path]) -> None:
        self._root = root
        self._indexes: dict[Path, FileIndex] = {}

    async def current(self) -> FileIndex:
        root = self._root()
        index = self._indexes.get(root)
        if index is None:
            # A new release: start a fresh index; old ones go with their releases.
            self._indexes = {root: FileIndex(root)}
            index = self._indexes[root]
        return index
