"""Serving a bucket site: the live release's files, from memory where they are small.

Per site, this process keeps the live release's file list (one listing when
the release changes) and the bytes of its small files (read on first use,
up to MAX_CACHED_BYTES); larger files stream from the bucket with a ranged
GET. Releases never change once published, so nothing cached needs
revalidating: only the pointer does, looked at no more than once a second
(POINTER_TTL), and at once after a publish or rollback made in this process.

A request only ever names a key the release's listing holds: URL paths are
looked up in that listing, never turned into keys, so none can leave the
release's prefix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import anyio

from shoestring.sites.bucket_releases import BucketLayout, watch_switches
from shoestring.sites.files import (
    MAX_CACHED_BYTES,
    SIBLINGS,
    SMALL_FILE,
    FileGone,
    SiteUnavailable,
    StaticFile,
    Variant,
    describe,
)
from shoestring.sites.publish import PublishError, check_release
from shoestring.storage.errors import NoSuchBucket, NoSuchKey, StorageError
from shoestring.storage.objects import ObjectInfo, RangeRequest, StoredObject

if TYPE_CHECKING:
    from shoestring.storage.bucket import Bucket

log = logging.getLogger("shoestring.sites")

# How stale a server's idea of the live release may be after a publish from
# another process (`shoestring sites publish`): one small GET per second.
POINTER_TTL = 1.0


class BucketFiles:
    """One release of a bucket site: its listing, and the files read so far."""

    def __init__(self, bucket: Bucket, release: str, prefix: str, listing: dict[str, ObjectInfo]):
        self.bucket = bucket
        self.release = release
        self.prefix = prefix
        self._listing = listing  # name relative to the release -> object
        self._files: dict[str, StaticFile] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self._listing)

    async def lookup(self, parts: list[str]) -> StaticFile | None:
        name = "/".join(parts)
        known = self._files.get(name)
        if known is not None:
            return known
        if name not in self._listing:
            return None  # a directory is SiteApp's to answer (its index.html, or a redirect)
        loaded = await self._load(name)
        if loaded is None:
            return None
        self._files[name] = loaded
        return loaded

    async def open(self, variant: Variant, start: int, length: int) -> AsyncGenerator[bytes, None]:
        stored = await self._get(variant.location, RangeRequest(start, start + length - 1))
        return _chunks(stored)

    async def _load(self, name: str) -> StaticFile | None:
        try:
            plain, info = await self._variant(name, None)
            encodings = [
                (await self._variant(name + suffix, encoding))[0]
                for encoding, suffix in SIBLINGS
                if name + suffix in self._listing
            ]
        except FileGone:
            return None  # the release was deleted under us; the next pointer look moves on
        return describe(
            PurePosixPath(name).name,
            plain=plain,
            encodings=tuple(encodings),
            mtime_ns=int(info.last_modified.timestamp()) * 1_000_000_000,
        )

    async def _variant(self, name: str, encoding: str | None) -> tuple[Variant, ObjectInfo]:
        """The object `name`; its ETag, the object's MD5 (or multipart MD5), is a strong one."""
        info = self._listing[name]
        key = self.prefix + name
        if info.size > SMALL_FILE or self._cached_bytes + info.size > MAX_CACHED_BYTES:
            return Variant(key, info.size, info.etag, encoding), info
        stored = await self._get(key, None)
        body = await stored.read()
        self._cached_bytes += len(body)
        return Variant(key, len(body), stored.info.etag, encoding, body), stored.info

    async def _get(self, key: str, byte_range: RangeRequest | None) -> StoredObject:
        try:
            return await self.bucket.get(key, range=byte_range)
        except (NoSuchKey, NoSuchBucket) as exc:
            raise FileGone(key) from exc
        except StorageError as exc:
            raise SiteUnavailable(f"cannot read {key} from bucket {self.bucket.name}") from exc


async def _chunks(stored: StoredObject) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in stored.body:
            yield chunk
    finally:
        await stored.body.close()


class BucketSource:
    """The live release of a site in `bucket` under `layout.prefix`, as SiteApp reads it."""

    def __init__(self, bucket: Bucket, layout: BucketLayout) -> None:
        self.bucket = bucket
        self.layout = layout
        self._files: BucketFiles | None = None
        self._next_look = 0.0
        self._switches = 0  # bumped by invalidate(): a look already under way may be stale
        self._lock = anyio.Lock()
        watch_switches(self)

    def invalidate(self) -> None:
        """Look at the pointer again on the next request (a publish in this process)."""
        self._switches += 1
        self._next_look = 0.0

    async def current(self) -> BucketFiles | None:
        if time.monotonic() < self._next_look:
            return self._files
        if self._files is not None and self._lock.locked():
            return self._files  # another request is looking; serve what we have meanwhile
        async with self._lock:
            if time.monotonic() >= self._next_look:
                switches = self._switches
                try:
                    await self._refresh()
                finally:
                    stale = switches != self._switches
                    self._next_look = 0.0 if stale else time.monotonic() + POINTER_TTL
        return self._files

    async def _refresh(self) -> None:
        try:
            release = await self._live()
            if release is None:
                self._files = None
            elif self._files is None or self._files.release != release:
                self._files = await self._load(release)
                log.info(
                    "site in %s/%s: serving release %s (%d files)",
                    self.bucket.name, self.layout.prefix, release, len(self._files),
                )  # fmt: skip
        except StorageError as exc:
            if self._files is None:
                raise SiteUnavailable(f"bucket {self.bucket.name} cannot be read: {exc}") from exc
            log.warning(
                "site in %s/%s: keeping release %s, the pointer cannot be read: %s",
                self.bucket.name, self.layout.prefix, self._files.release, exc,
            )  # fmt: skip

    async def _live(self) -> str | None:
        try:
            data = await self.bucket.read(self.layout.pointer)
        except (NoSuchKey, NoSuchBucket):
            return None
        release = data.decode("utf-8", "replace").strip()
        try:
            return check_release(release)
        except PublishError:
            log.warning("site in %s: %s holds no release id", self.bucket.name, self.layout.pointer)
            return self._files.release if self._files is not None else None

    async def _load(self, release: str) -> BucketFiles:
        prefix = self.layout.files(release)
        listing = {
            item.key[len(prefix) :]: item
            async for item in self.bucket.list(prefix=prefix)
            if not isinstance(item, str)
        }
        return BucketFiles(self.bucket, release, prefix, listing)
