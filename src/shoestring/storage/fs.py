"""The embedded backend: objects as files under the data directory, indexed in SQLite.

    <root>/index.sqlite    buckets, objects, uploads and parts (fs_index.py)
    <root>/data/ab/<id>    one immutable file per object or part, named by a random id
    <root>/tmp/<id>        bodies being received

A put writes the body to tmp/, fsyncs it, renames it into data/, fsyncs
that directory, and only then commits the index row that makes it visible
(replacing the previous row in the same transaction). Files are never
changed after the rename, so a reader holding one is never torn, a copy is a
hard link, and no key ever becomes part of a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from shoestring.storage.backend import Body
from shoestring.storage.digests import DigestingReader, Expected, iterate, multipart_etag
from shoestring.storage.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)
from shoestring.storage.fs_index import (
    Index,
    Row,
    config_to_json,
    object_info,
    prefix_end,
    when,
)
from shoestring.storage.fs_recent import RecentObjects
from shoestring.storage.objects import (
    MULTIPART_MIN_PART,
    BucketConfig,
    BucketInfo,
    ListPage,
    ObjectBody,
    ObjectInfo,
    ObjectMeta,
    Part,
    RangeRequest,
    StoredObject,
    Upload,
    UploadPage,
)
from shoestring.storage.uploads import page_of_uploads

log = logging.getLogger("shoestring.storage")

T = TypeVar("T")

# Objects up to this size are read on the event loop's thread in one call:
# from the page cache that takes microseconds, less than a hop to a thread.
SMALL_OBJECT = 256 * 1024
READ_CHUNK = 1024 * 1024
# Files older than this and referenced by nothing are a crash's leftovers;
# younger ones may belong to a put in flight in another process.
ORPHAN_AGE = 3600.0

_UPSERT_OBJECT = """
    INSERT INTO objects (bucket, key, file, size, etag, mtime, meta)
    SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM buckets WHERE name = ?)
    ON CONFLICT (bucket, key) DO UPDATE SET file = excluded.file, size = excluded.size,
        etag = excluded.etag, mtime = excluded.mtime, meta = excluded.meta
    RETURNING 1"""


class FsBackend:
    """Buckets and objects in a directory (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, max_object_size: int, fsync: bool = True) -> None:
        self.root = root
        self.max_object_size = max_object_size
        self.fsync = fsync
        self.index = Index(root / "index.sqlite")
        self._data = root / "data"
        self._data_dir = str(self._data)
        self._recent = RecentObjects()
        self._tmp = root / "tmp"
        self._writer: ThreadPoolExecutor | None = None
        self._sweeping: asyncio.Future[int] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="storage-index")
        await asyncio.to_thread(self._prepare)
        await self._on_writer(self.index.open)
        self._sweeping = asyncio.get_running_loop().run_in_executor(None, self.sweep)

    def _prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        for n in range(256):
            (self._data / f"{n:02x}").mkdir(parents=True, exist_ok=True)
        _fsync_dir(self._data)
        _fsync_dir(self.root)

    async def close(self) -> None:
        if self._sweeping is not None:
            await self._sweeping  # it reads the index and the data directory: let it finish
            self._sweeping = None
        if self._writer is not None:
            await self._on_writer(self.index.close)
            self._writer.shutdown(wait=True)
            self._writer = None

    async def ping(self) -> None:
        self.index.read_one("SELECT 1")

    def sweep(self, older_than: float = ORPHAN_AGE) -> int:
        """Remove files no index row references (left by a crash); return how many."""
        cutoff = time.time() - older_than
        removed = 0
        try:
            referenced = self.index.referenced_files()
            candidates = [*self._tmp.iterdir(), *self._data.glob("??/*")]
            for path in candidates:
                if path.name not in referenced and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            log.warning("storage sweep stopped early: %s", exc)
        if removed:
            log.info("storage sweep removed %d unreferenced files", removed)
        return removed

    async def _on_writer(self, call: Callable[[], T]) -> T:
        if self._writer is None:
            raise RuntimeError("the storage backend is not open: start the app first")
        return await asyncio.get_running_loop().run_in_executor(self._writer, call)

    async def _write(self, *statements: tuple[str, Sequence[Any]]) -> list[Any]:
        return await self._on_writer(lambda: self.index.write(statements))

    def _file_name(self, file: str) -> str:
        # A str, not a Path: pathlib costs a small GET more than its read.
        return f"{self._data_dir}/{file[:2]}/{file}"

    def _path(self, file: str) -> Path:
        return Path(self._file_name(file))

    # -- buckets -----------------------------------------------------------

    async def create_bucket(self, name: str, config: BucketConfig) -> None:
        sql = "INSERT INTO buckets (name, created, config) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1"
        (row,) = await self._write((sql, (name, time.time(), config_to_json(config))))
        if row is None:
            raise BucketAlreadyExists(f"bucket {name!r} already exists")

    async def delete_bucket(self, name: str) -> None:
        self._require_bucket(name)
        uploads = self.index.read_all("SELECT upload_id FROM uploads WHERE bucket = ?", (name,))
        sql = (
            "DELETE FROM buckets WHERE name = ? AND NOT EXISTS "
            "(SELECT 1 FROM objects WHERE bucket = ?) RETURNING 1"
        )
        (row,) = await self._write((sql, (name, name)))
        if row is None:
            raise BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")
        for (upload_id,) in uploads:
            with contextlib.suppress(NoSuchUpload):
                await self.abort_upload(name, "", upload_id)

    async def list_buckets(self) -> list[BucketInfo]:
        return self.index.buckets()

    async def bucket_config(self, name: str) -> BucketConfig:
        return self._require_bucket(name)

    async def set_bucket_config(self, name: str, config: BucketConfig) -> None:
        sql = "UPDATE buckets SET config = ? WHERE name = ? RETURNING 1"
        (row,) = await self._write((sql, (config_to_json(config), name)))
        if row is None:
            raise NoSuchBucket(f"no bucket named {name!r}")

    def _require_bucket(self, name: str) -> BucketConfig:
        config = self.index.bucket_config(name)
        if config is None:
            raise NoSuchBucket(f"no bucket named {name!r}")
        return config

    # -- writing files -----------------------------------------------------

    async def _receive(self, body: Body, expected: Expected | None) -> tuple[str, int, str]:
        """Write the body to a new durable file; return (file, size, etag)."""
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        reader = DigestingReader(expected, self.max_object_size)
        try:
            # Writes go to the page cache and are fast; the slow part, fsync,
            # runs on a thread in _persist.
            async for chunk in iterate(body):
                reader.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            etag = reader.finish(body)
            file = await asyncio.to_thread(self._persist, fd, tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return file, reader.size, etag

    def _persist(self, fd: int, tmp: Path, *, synced: bool = False) -> str:
        """fsync the file, rename it into data/, fsync that directory; return its name."""
        try:
            if self.fsync and not synced:
                os.fsync(fd)
        finally:
            os.close(fd)
        file = uuid.uuid4().hex
        os.rename(tmp, self._path(file))
        if self.fsync:
            _fsync_dir(self._path(file).parent)
        return file

    def _discard(self, *files: str | None) -> None:
        for file in files:
            if file:
                with contextlib.suppress(OSError):
                    os.unlink(self._path(file))

    async def _commit_object(
        self, bucket: str, key: str, file: str, size: int, etag: str, meta: ObjectMeta,
        *extra: tuple[str, Sequence[Any]],
    ) -> ObjectInfo:  # fmt: skip
        """Make `file` the object at `key`, in one transaction with `extra` statements."""
        mtime = time.time()
        encoded = key.encode("utf-8")
        old_sql = "SELECT file FROM objects WHERE bucket = ? AND key = ?"
        try:
            old, row, *_ = await self._write(
                (old_sql, (bucket, encoded)),
                (
                    _UPSERT_OBJECT,
                    (bucket, encoded, file, size, etag, mtime, json.dumps(meta.to_json()), bucket),
                ),
                *extra,
            )
        except BaseException:
            self._discard(file)
            raise
        if row is None:
            self._discard(file)
            raise NoSuchBucket(f"no bucket named {bucket!r}")
        if old is not None:
            self._discard(old[0])
        return ObjectInfo(key=key, size=size, etag=etag, last_modified=when(mtime), meta=meta)

    # -- objects -----------------------------------------------------------

    async def put(
        self, bucket: str, key: str, body: Body, meta: ObjectMeta, expected: Expected | None
    ) -> ObjectInfo:
        self._require_bucket(bucket)
        file, size, etag = await self._receive(body, expected)
        return await self._commit_object(bucket, key, file, size, etag, meta)

    def _lookup(self, bucket: str, key: str) -> tuple[Row, ObjectInfo, bytes | None]:
        """The object's current index row, its info and (if remembered) its whole body."""
        row = self.index.lookup(bucket, key)
        if row is None:
            self._require_bucket(bucket)
            raise NoSuchKey("the specified key does not exist")
        row = tuple(row)
        recent = self._recent.get(row)
        if recent is not None:
            return row, recent[0], recent[1]
        _, size, etag, mtime, meta = row
        info = object_info(key.encode("utf-8"), size, etag, mtime, meta)
        self._recent.remember(row, info, None)
        return row, info, None

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        return self._lookup(bucket, key)[1]

    async def get(
        self, bucket: str, key: str, byte_range: RangeRequest | None = None
    ) -> StoredObject:
        # A put may replace the object (and unlink its file) between the lookup
        # and the open; the new row then names a file that exists.
        for _ in range(3):
            row, info, body = self._lookup(bucket, key)
            span = byte_range.resolve(info.size) if byte_range is not None else None
            start, length = (span.start, span.length) if span else (0, info.size)
            if body is not None:
                return StoredObject(info, ObjectBody(data=body[start : start + length]), span)
            try:
                fd = os.open(self._file_name(row[0]), os.O_RDONLY)
            except FileNotFoundError:
                continue
            if length <= SMALL_OBJECT:
                try:
                    data = os.pread(fd, length, start)
                finally:
                    os.close(fd)
                if span is None:
                    self._recent.remember(row, info, data)
                return StoredObject(info, ObjectBody(data=data), span)
            return StoredObject(info, ObjectBody(chunks=_read_chunks(fd, start, length)), span)
        raise NoSuchKey("the specified key does not exist")

    async def delete(self, bucket: str, key: str) -> bool:
        self._require_bucket(bucket)
        sql = "DELETE FROM objects WHERE bucket = ? AND key = ? RETURNING file"
        (row,) = await self._write((sql, (bucket, key.encode("utf-8"))))
        if row is None:
            return False
        self._discard(row[0])
        return True

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> ListPage:
        self._require_bucket(bucket)
        raw_prefix = prefix.encode("utf-8")
        raw_after = after.encode("utf-8")
        end = prefix_end(raw_prefix) if raw_prefix else None
        start, inclusive = (raw_after, False) if raw_after >= raw_prefix else (raw_prefix, True)
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = b""
        while True:
            jumped = False
            for key, size, etag, mtime, meta in self.index.scan(bucket, start, inclusive, end):
                if len(objects) + len(prefixes) == max_keys:
                    return ListPage(objects, prefixes, True, last.decode("utf-8"))
                rest = key[len(raw_prefix) :]
                cut = rest.find(delimiter.encode("utf-8")) if delimiter else -1
                if cut < 0:
                    objects.append(object_info(key, size, etag, mtime, meta))
                    last = key
                    continue
                common = raw_prefix + rest[: cut + len(delimiter.encode("utf-8"))]
                # A common prefix at or before the marker was returned on an
                # earlier page (as NextMarker): skip past everything under it.
                if common > raw_after or not raw_after:
                    prefixes.append(common.decode("utf-8"))
                    last = common
                skip_to = prefix_end(common)
                if skip_to is None:
                    return ListPage(objects, prefixes, False, None)
                start, inclusive, jumped = skip_to, True, True
                break
            if not jumped:
                return ListPage(objects, prefixes, False, None)

    async def copy(
        self, source_bucket: str, source_key: str, bucket: str, key: str, meta: ObjectMeta | None
    ) -> ObjectInfo:
        self._require_bucket(bucket)
        for _ in range(3):
            row, info, _ = self._lookup(source_bucket, source_key)
            try:
                linked = await asyncio.to_thread(self._link, row[0])
            except FileNotFoundError:
                continue  # replaced between the lookup and the link: look again
            return await self._commit_object(
                bucket, key, linked, info.size, info.etag, meta or info.meta
            )
        raise NoSuchKey("the specified key does not exist")

    def _link(self, file: str) -> str:
        # Files never change after they are written, so two objects may share one.
        linked = uuid.uuid4().hex
        os.link(self._path(file), self._path(linked))
        if self.fsync:
            _fsync_dir(self._path(linked).parent)
        return linked

    # -- multipart ---------------------------------------------------------

    async def create_upload(self, bucket: str, key: str, meta: ObjectMeta) -> Upload:
        self._require_bucket(bucket)
        # Ids that sort by creation time: one key's uploads are then listed in
        # the order they began, as S3 lists them, and upload-id-marker compares ids.
        upload_id = f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
        now = time.time()
        sql = "INSERT INTO uploads (upload_id, bucket, key, meta, initiated) VALUES (?, ?, ?, ?, ?)"
        await self._write(
            (sql, (upload_id, bucket, key.encode("utf-8"), json.dumps(meta.to_json()), now))
        )
        return Upload(upload_id, key, when(now))

    def _upload_meta(self, bucket: str, key: str, upload_id: str) -> ObjectMeta:
        sql = "SELECT meta FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?"
        row = self.index.read_one(sql, (upload_id, bucket, key.encode("utf-8")))
        if row is None:
            self._require_bucket(bucket)
            raise NoSuchUpload("the specified multipart upload does not exist")
        return ObjectMeta.from_json(json.loads(row[0]))

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        expected: Expected | None,
    ) -> Part:
        self._upload_meta(bucket, key, upload_id)
        file, size, etag = await self._receive(body, expected)
        now = time.time()
        try:
            old, row = await self._write(
                ("SELECT file FROM parts WHERE upload_id = ? AND number = ?", (upload_id, number)),
                (
                    "INSERT INTO parts (upload_id, number, file, size, etag, mtime) "
                    "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM uploads WHERE upload_id = ?) "
                    "ON CONFLICT (upload_id, number) DO UPDATE SET file = excluded.file, "
                    "size = excluded.size, etag = excluded.etag, mtime = excluded.mtime RETURNING 1",
                    (upload_id, number, file, size, etag, now, upload_id),
                ),
            )
        except BaseException:
            self._discard(file)
            raise
        if row is None:
            self._discard(file)
            raise NoSuchUpload("the multipart upload was completed or aborted meanwhile")
        self._discard(old[0] if old else None)
        return Part(number, etag, size, when(now))

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        source_bucket: str,
        source_key: str,
        byte_range: RangeRequest | None,
    ) -> Part:
        source = await self.get(source_bucket, source_key, byte_range)
        return await self.upload_part(bucket, key, upload_id, number, source.body, None)

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        meta = self._upload_meta(bucket, key, upload_id)
        stored = {
            number: (file, size, etag)
            for number, file, size, etag in self.index.read_all(
                "SELECT number, file, size, etag FROM parts WHERE upload_id = ?", (upload_id,)
            )
        }
        _check_parts(parts, stored)
        files = [stored[number][0] for number, _ in parts]
        file = await asyncio.to_thread(self._concatenate, files)
        size = sum(stored[number][1] for number, _ in parts)
        etag = multipart_etag([stored[number][2] for number, _ in parts])
        info = await self._commit_object(
            bucket, key, file, size, etag, meta,
            ("DELETE FROM parts WHERE upload_id = ?", (upload_id,)),
            ("DELETE FROM uploads WHERE upload_id = ?", (upload_id,)),
        )  # fmt: skip
        self._discard(*(entry[0] for entry in stored.values()))
        return info

    def _concatenate(self, files: list[str]) -> str:
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                for file in files:
                    with self._path(file).open("rb") as part:
                        shutil.copyfileobj(part, out, READ_CHUNK)
            return self._persist(fd, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        rows = await self._write(
            ("SELECT group_concat(file, ' ') FROM parts WHERE upload_id = ?", (upload_id,)),
            ("DELETE FROM parts WHERE upload_id = ?", (upload_id,)),
            (
                "DELETE FROM uploads WHERE upload_id = ? AND bucket = ? RETURNING 1",
                (upload_id, bucket),
            ),
        )
        if rows[2] is None:
            raise NoSuchUpload("the specified multipart upload does not exist")
        self._discard(*((rows[0][0] or "").split()))

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part]:
        self._upload_meta(bucket, key, upload_id)
        rows = self.index.read_all(
            "SELECT number, etag, size, mtime FROM parts WHERE upload_id = ? ORDER BY number",
            (upload_id,),
        )
        return [Part(number, etag, size, when(mtime)) for number, etag, size, mtime in rows]

    async def list_uploads(
        self, bucket: str, *, prefix: str, delimiter: str, key_marker: str,
        upload_id_marker: str, max_uploads: int,
    ) -> UploadPage:  # fmt: skip
        self._require_bucket(bucket)
        raw_prefix, raw_marker = prefix.encode("utf-8"), key_marker.encode("utf-8")
        sql = "SELECT upload_id, key, initiated FROM uploads WHERE bucket = ? AND key >= ?"
        params: list[Any] = [bucket, raw_prefix]
        end = prefix_end(raw_prefix) if raw_prefix else None
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        if key_marker and upload_id_marker:
            sql += " AND (key > ? OR (key = ? AND upload_id > ?))"
            params += [raw_marker, raw_marker, upload_id_marker]
        elif key_marker:
            sql += " AND key > ?"
            params.append(raw_marker)
        with contextlib.closing(
            self.index.iterate(sql + " ORDER BY key, upload_id", params)
        ) as rows:
            return page_of_uploads(
                (Upload(upload_id, key.decode("utf-8"), when(at)) for upload_id, key, at in rows),
                prefix=prefix, delimiter=delimiter, key_marker=key_marker, max_uploads=max_uploads,
            )  # fmt: skip

    def presign(
        self, bucket: str, key: str, method: str, expires: int, now: datetime | None
    ) -> str | None:
        return None  # shoestring's own S3 API answers for this backend


def _check_parts(parts: Sequence[tuple[int, str]], stored: dict[int, tuple[str, int, str]]) -> None:
    if not parts:
        raise InvalidPart("CompleteMultipartUpload must list at least one part")
    numbers = [number for number, _ in parts]
    if numbers != sorted(set(numbers)):
        raise InvalidPartOrder("the list of parts was not in ascending order")
    for index, (number, etag) in enumerate(parts):
        if number not in stored or stored[number][2].strip('"') != etag.strip('"'):
            raise InvalidPart(f"part {number} was not uploaded or its ETag does not match")
        if index < len(parts) - 1 and stored[number][1] < MULTIPART_MIN_PART:
            raise EntityTooSmall(f"part {number} is smaller than the 5 MiB minimum")


async def _read_chunks(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    # Reads run on the loop's thread: objects are immutable files, almost
    # always in the page cache when hot, and a thread hop per MiB measured
    # slower than the read itself (bench/storage.py).
    try:
        offset, remaining = start, length
        while remaining > 0:
            chunk = os.pread(fd, min(READ_CHUNK, remaining), offset)
            if not chunk:
                break
            offset += len(chunk)
            remaining -= len(chunk)
            yield chunk
            await asyncio.sleep(0)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
