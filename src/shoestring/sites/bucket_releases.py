"""Sites published into object storage: releases under a key prefix, one pointer object.

    PREFIX/releases/20261124T073000.123-1a2b/index.html ...  the files of one publish
    PREFIX/releases/20261124T073000.123-1a2b.json             its manifest, written last
    PREFIX/current                                            the live release's id

`publish` uploads every file (and the Brotli and gzip siblings a directory
publish would make, compression.py) under a new release, then its manifest,
and only then replaces `current` with one put. Until that put, servers keep
answering from the old release; a publish that fails halfway leaves a
release without a manifest, which is never listed nor made live, and is
deleted by the failed publish itself or, if that process died, by a later
publish once it is an hour old.

Works the same on the fs and s3 storage backends: it uses only `Bucket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from shoestring.sites.compression import compress, siblings_to_make
from shoestring.sites.publish import (
    KEEP_RELEASES,
    PublishError,
    PublishProgress,
    check_release,
    new_release_id,
)
from shoestring.storage.errors import (
    BucketAlreadyExists,
    NoSuchBucket,
    NoSuchKey,
    StorageError,
)
from shoestring.storage.keys import check_key

if TYPE_CHECKING:
    from shoestring.storage.bucket import Bucket

UPLOADS_AT_ONCE = 8  # keeps an S3 backend busy without opening a connection per file
STREAM_FROM = 8 * 1024 * 1024  # files above this are uploaded in chunks, not read whole
ORPHAN_AGE = 3600  # seconds before a release without manifest counts as abandoned

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BucketLayout:
    """Where a bucket site keeps what, under its prefix (`www/`)."""

    prefix: str

    @classmethod
    def for_site(cls, name: str, prefix: str) -> BucketLayout:
        """The layout for `[sites.NAME] prefix` (empty: `NAME/`)."""
        prefix = prefix or f"{name}/"
        return cls(prefix if prefix.endswith("/") else prefix + "/")

    @property
    def pointer(self) -> str:
        return f"{self.prefix}current"

    @property
    def releases(self) -> str:
        return f"{self.prefix}releases/"

    def files(self, release: str) -> str:
        return f"{self.releases}{release}/"

    def manifest(self, release: str) -> str:
        return f"{self.releases}{release}.json"


class SwitchWatcher(Protocol):
    bucket: Bucket
    layout: BucketLayout

    def invalidate(self) -> None: ...


# Sites served by this process (bucket_source.BucketSource), told of a switch
# made through the same storage at once, instead of at their next look at
# the pointer (as a server learns of a publish by `shoestring sites publish`).
_watchers: weakref.WeakSet[SwitchWatcher] = weakref.WeakSet()


def watch_switches(watcher: SwitchWatcher) -> None:
    _watchers.add(watcher)


def _announce_switch(bucket: Bucket, layout: BucketLayout) -> None:
    for watcher in list(_watchers):
        same = watcher.bucket.storage is bucket.storage and watcher.bucket.name == bucket.name
        if same and watcher.layout == layout:
            watcher.invalidate()


@dataclass(frozen=True, slots=True)
class _Upload:
    path: Path
    name: str  # relative to the build directory, `/`-separated
    size: int
    siblings: tuple[str, ...]  # suffixes of the siblings to try making (`.br`, `.gz`)


class BucketReleases:
    """Publish, list, switch and roll back the releases of one bucket site."""

    def __init__(
        self, bucket: Bucket, layout: BucketLayout, *, site: str, keep: int = KEEP_RELEASES
    ) -> None:
        self.bucket = bucket
        self.layout = layout
        self.site = site
        self.keep = keep

    async def live(self) -> str | None:
        """The live release's id; None before the first publish."""
        try:
            data = await self.bucket.read(self.layout.pointer)
        except (NoSuchKey, NoSuchBucket):
            return None
        return data.decode("utf-8", "replace").strip() or None

    async def releases(self) -> list[str]:
        """Complete releases (those with a manifest), oldest first."""
        return sorted((await self._listing())[0])

    async def publish(self, source: Path, *, progress: PublishProgress | None = None) -> str:
        """Upload `source` as a new release and make it live; return its id.

        Raises PublishError, with the live release unchanged, if `source` has
        no index.html, holds a name that cannot be a key, or an upload fails.
        """
        release = new_release_id()
        files = self.layout.files(release)
        uploads = _plan(source, files)
        if progress is not None:
            progress.planned(len(uploads), sum(upload.size for upload in uploads))
        with contextlib.suppress(BucketAlreadyExists):
            await self.bucket.create()
        try:
            await _each(uploads, lambda upload: self._upload(files, upload, progress))
            manifest = {
                "release": release,
                "files": len(uploads),
                "bytes": sum(upload.size for upload in uploads),
                "published": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            await self.bucket.put(
                self.layout.manifest(release),
                json.dumps(manifest).encode(),
                content_type="application/json",
            )
        except (PublishError, StorageError, OSError) as exc:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._delete_files(release)
            raise PublishError(
                f"publishing site {self.site} failed, the live release is unchanged: {exc}"
            ) from exc
        await self.switch(release)
        await self._prune(live=release)
        return release

    async def switch(self, release: str) -> None:
        """Make the complete release `release` live with one put of the pointer."""
        check_release(release)
        try:
            await self.bucket.head(self.layout.manifest(release))
        except (NoSuchKey, NoSuchBucket):
            raise PublishError(
                f"site {self.site} has no release {release}; see `shoestring sites ls {self.site}`"
            ) from None
        await self.bucket.put(
            self.layout.pointer,
            release.encode(),
            content_type="text/plain; charset=utf-8",
            cache_control="no-cache",
        )
        _announce_switch(self.bucket, self.layout)

    async def rollback(self, release: str | None = None) -> str:
        """Switch to `release`, or to the one before the live one; return it."""
        if release is None:
            known = await self.releases()
            live = await self.live()
            if live not in known or known.index(live) == 0:
                raise PublishError(
                    f"site {self.site} has no release before {live or 'the live one'}"
                )
            release = known[known.index(live) - 1]
        await self.switch(release)
        return release

    async def delete(self, release: str) -> None:
        """Delete a release that is not live: its manifest first, so it is never half listed."""
        check_release(release)
        if release == await self.live():
            raise PublishError(f"release {release} of site {self.site} is live; switch first")
        await self.bucket.delete(self.layout.manifest(release))
        await self._delete_files(release)

    # -- steps ---------------------------------------------------------------

    async def _upload(self, files: str, upload: _Upload, progress: PublishProgress | None) -> None:
        key = files + upload.name
        try:
            if upload.size > STREAM_FROM and not upload.siblings:
                await self.bucket.put(key, _chunks(upload.path))
            else:
                data = await anyio.to_thread.run_sync(upload.path.read_bytes)
                await self.bucket.put(key, data)
                for suffix in upload.siblings:
                    encoded = await anyio.to_thread.run_sync(compress, data, suffix)
                    if encoded is not None:
                        await self.bucket.put(key + suffix, encoded)
        except (StorageError, OSError) as exc:
            raise PublishError(f"uploading {upload.path} failed: {exc}") from exc
        if progress is not None:
            progress.uploaded(upload.name, upload.size)

    async def _listing(self) -> tuple[set[str], set[str]]:
        """(releases with a manifest, releases with files)."""
        complete: set[str] = set()
        started: set[str] = set()
        base = self.layout.releases
        try:
            async for item in self.bucket.list(prefix=base, delimiter="/"):
                if isinstance(item, str):
                    started.add(item[len(base) :].removesuffix("/"))
                elif item.key.endswith(".json"):
                    complete.add(item.key[len(base) :].removesuffix(".json"))
        except NoSuchBucket:
            pass
        return complete, started

    async def _prune(self, *, live: str) -> None:
        complete, started = await self._listing()
        for old in sorted(complete)[: -self.keep]:
            if old != live:
                await self.delete(old)
        cutoff = time.time() - ORPHAN_AGE
        for orphan in started - complete:
            if _published_at(orphan) < cutoff:
                await self._delete_files(orphan)

    async def _delete_files(self, release: str) -> None:
        keys = [
            item.key
            async for item in self.bucket.list(prefix=self.layout.files(release))
            if not isinstance(item, str)
        ]
        await _each(keys, self.bucket.delete)


def _plan(source: Path, files: str) -> list[_Upload]:
    """What to upload from `source`, checked before anything is uploaded."""
    if not (source / "index.html").is_file():
        raise PublishError(f"{source} has no index.html: point at the build output (dist/, build/)")
    paths = sorted(path for path in source.rglob("*") if path.is_file())
    names = {path.relative_to(source).as_posix() for path in paths}
    uploads = []
    for path in paths:
        name = path.relative_to(source).as_posix()
        size = path.stat().st_size
        siblings = siblings_to_make(name, size, names)
        for key in (name, *(name + suffix for suffix in siblings)):
            try:
                check_key(files + key)
            except ValueError as exc:
                raise PublishError(f"{path} cannot be published: {exc}") from None
        uploads.append(_Upload(path, name, size, siblings))
    return uploads


async def _each(items: Iterable[T], action: Callable[[T], Awaitable[object]]) -> None:
    """Run `action` on every item, UPLOADS_AT_ONCE at a time; after a failure, start no more.

    Actions already running finish rather than being cancelled: a cancelled
    upload may still land after the caller has cleaned up, leaving a stray key.
    """
    pending = iter(items)
    failures: list[BaseException] = []

    async def worker() -> None:
        for item in pending:  # one shared iterator: each item goes to one worker
            if failures:
                return
            try:
                await action(item)
            except Exception as exc:
                failures.append(exc)
                return

    await asyncio.gather(*(worker() for _ in range(UPLOADS_AT_ONCE)))
    if failures:
        raise failures[0]


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    file = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(file.read, 1024 * 1024):
            yield chunk
    finally:
        await anyio.to_thread.run_sync(file.close)


def _published_at(release: str) -> float:
    """When the release was started, from its id; +inf if the id has no time in it."""
    try:
        return datetime.strptime(release[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float("inf")
