"""The embedded backend: objects as files under the data directory, indexed in SQLite.

    <root>/index.sqlite    buckets, objects, uploads and parts (fs_index.py)
    <root>/data/ab/<id>    one immutable file per object or part, named by a random id
    <root>/tmp/<id>        bodies being received (fs_files.py)

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
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from shoestring.storage.backend import Body
from shoestring.storage.checksums import (
    DEFAULT_CHECKSUM,
    check_object_checksum,
    checksum_type,
    composite,
    file_checksum,
    put_algorithm,
)
from shoestring.storage.digests import Digested, Expected, multipart_etag
from shoestring.storage.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)
from shoestring.storage.fs_files import DataFiles, read_chunks
from shoestring.storage.fs_index import (
    Guard,
    Index,
    Row,
    Statement,
    checksum_from_text,
    checksum_to_text,
    config_to_json,
    object_info,
    prefix_end,
    when,
)
from shoestring.storage.fs_parts import PartsChanged, StoredPart, check_parts
from shoestring.storage.fs_recent import RecentObjects, RecentRows
from shoestring.storage.objects import (
    BucketConfig,
    BucketInfo,
    Checksum,
    ChecksumType,
    CompletedPart,
    ListPage,
    ObjectBody,
    ObjectInfo,
    ObjectMeta,
    Part,
    RangeRequest,
    StoredObject,
    Upload,
    UploadPage,
    WriteCondition,
)
from shoestring.storage.uploads import page_of_uploads

log = logging.getLogger("shoestring.storage")

T = TypeVar("T")

# Objects up to this size are read on the event loop's thread in one call:
# from the page cache that takes microseconds, less than a hop to a thread.
SMALL_OBJECT = 256 * 1024
# Files older than this and referenced by nothing are a crash's leftovers;
# younger ones may belong to a put in flight in another process.
ORPHAN_AGE = 3600.0

_UPSERT_OBJECT = """
    INSERT INTO objects (bucket, key, file, size, etag, mtime, meta, checksum, parts)
    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM buckets WHERE name = ?)
    ON CONFLICT (bucket, key) DO UPDATE SET file = excluded.file, size = excluded.size,
        etag = excluded.etag, mtime = excluded.mtime, meta = excluded.meta,
        checksum = excluded.checksum, parts = excluded.parts
    RETURNING 1"""


_UPLOAD_IS_OURS = "EXISTS (SELECT 1 FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?)"
_ABORT_FILES = (
    f"SELECT group_concat(file, ' ') FROM parts WHERE upload_id = ? AND {_UPLOAD_IS_OURS}"  # noqa: S608
)
_ABORT_PARTS = f"DELETE FROM parts WHERE upload_id = ? AND {_UPLOAD_IS_OURS}"  # noqa: S608


class FsBackend:
    """Buckets and objects in a directory (see the module docstring for the layout)."""

    def __init__(self, root: Path, *, max_object_size: int, fsync: bool = True) -> None:
        self.root = root
        self.index = Index(root / "index.sqlite")
        self.files = DataFiles(root, max_object_size=max_object_size, fsync=fsync)
        self._recent = RecentObjects()
        self._rows = RecentRows()
        self._writer: ThreadPoolExecutor | None = None
        self._sweeping: asyncio.Future[int] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="storage-index")
        await asyncio.to_thread(self.files.prepare)
        await self._on_writer(self.index.open)
        self._rows = RecentRows()  # a reopened index's header may repeat an old one
        self._sweeping = asyncio.get_running_loop().run_in_executor(None, self.sweep)

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
            for path in self.files.everything():
                if path.name in referenced:
                    continue
                try:
                    if path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:  # a put in flight renamed its temporary file
                    continue
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

    async def _write(self, *statements: Statement, guards: Sequence[Guard] = ()) -> list[Any]:
        return await self._on_writer(lambda: self.index.write(statements, guards))

    # -- buckets -----------------------------------------------------------

    async def create_bucket(self, name: str, config: BucketConfig) -> None:
        sql = "INSERT INTO buckets (name, created, config) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1"
        (row,) = await self._write((sql, (name, time.time(), config_to_json(config))))
        if row is None:
            raise BucketAlreadyExists(f"bucket {name!r} already exists")

    async def delete_bucket(self, name: str) -> None:
        # As S3: only objects keep a bucket; its uploads in progress are aborted with
        # it, in the same transaction, so none is left to reappear in a namesake.
        def empty(row: Row | None) -> None:
            if row is None or not row[0]:
                raise NoSuchBucket(f"no bucket named {name!r}")
            if row[1]:
                raise BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")

        its_uploads = "SELECT upload_id FROM uploads WHERE bucket = ?"
        files, *_ = await self._write(
            (
                f"SELECT group_concat(file, ' ') FROM parts WHERE upload_id IN ({its_uploads})",  # noqa: S608
                (name,),
            ),
            (f"DELETE FROM parts WHERE upload_id IN ({its_uploads})", (name,)),  # noqa: S608
            ("DELETE FROM uploads WHERE bucket = ?", (name,)),
            ("DELETE FROM buckets WHERE name = ?", (name,)),
            guards=[
                (
                    "SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?), "
                    "EXISTS (SELECT 1 FROM objects WHERE bucket = ?)",
                    (name, name),
                    empty,
                )
            ],
        )
        self.files.discard(*((files[0] if files else None) or "").split())

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

    # -- committing --------------------------------------------------------

    async def _commit_object(
        self, bucket: str, key: str, file: str, digested: Digested, meta: ObjectMeta,
        *extra: Statement, parts: tuple[int, ...] | None = None,
        condition: WriteCondition | None = None, guards: Sequence[Guard] = (),
    ) -> ObjectInfo:  # fmt: skip
        """Make `file` the object at `key`, in one transaction with `extra` statements.

        `parts`: the sizes of the parts of a multipart object, in order. The
        `guards`, then `condition` (against the object now at `key`), are
        checked inside that transaction: if one fails, nothing changes and
        `file` is discarded.
        """
        mtime = time.time()
        encoded = key.encode("utf-8")
        size, etag, checksum = digested.size, digested.etag, digested.checksum
        old_sql = "SELECT file FROM objects WHERE bucket = ? AND key = ?"
        values = (
            bucket, encoded, file, size, etag, mtime, json.dumps(meta.to_json()),
            checksum_to_text(checksum), json.dumps(parts) if parts else None, bucket,
        )  # fmt: skip
        checks = list(guards)
        if condition is not None:
            checks.append(
                (
                    "SELECT etag FROM objects WHERE bucket = ? AND key = ?",
                    (bucket, encoded),
                    lambda found: condition.check(found[0] if found else None),
                )
            )
        try:
            old, row, *_ = await self._write(
                (old_sql, (bucket, encoded)), (_UPSERT_OBJECT, values), *extra, guards=checks
            )
        except BaseException:
            self.files.discard(file)
            raise
        if row is None:
            self.files.discard(file)
            raise NoSuchBucket(f"no bucket named {bucket!r}")
        if old is not None:
            self.files.discard(old[0])
        return ObjectInfo(key, size, etag, when(mtime), meta, checksum, parts)

    # -- objects -----------------------------------------------------------

    async def put(
        self, bucket: str, key: str, body: Body, meta: ObjectMeta, expected: Expected | None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        self._require_bucket(bucket)
        file, digested = await self.files.receive(body, expected, put_algorithm(expected))
        return await self._commit_object(bucket, key, file, digested, meta, condition=condition)

    def _lookup(self, bucket: str, key: str) -> tuple[Row, ObjectInfo, bytes | None]:
        """The object's current index row, its info and (if remembered) its whole body."""
        version = self.index.version()  # before the lookup: see RecentRows.remember
        row = self._rows.get(version, bucket, key)
        if row is None:
            found = self.index.lookup(bucket, key)
            if found is None:
                self._require_bucket(bucket)
                raise NoSuchKey("the specified key does not exist")
            row = tuple(found)
            self._rows.remember(version, bucket, key, row)
        recent = self._recent.get(row)
        if recent is not None:
            return row, recent[0], recent[1]
        _, size, etag, mtime, meta, checksum, parts = row
        info = object_info(key.encode("utf-8"), size, etag, mtime, meta, checksum, parts)
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
            if span is not None and info.checksum is not None:
                info = replace(info, checksum=None)  # it is not the range's, as S3 answers
            if body is not None:
                return StoredObject(info, ObjectBody(data=body[start : start + length]), span)
            try:
                fd = os.open(self.files.name(row[0]), os.O_RDONLY)
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
            return StoredObject(info, ObjectBody(chunks=read_chunks(fd, start, length)), span)
        raise NoSuchKey("the specified key does not exist")

    async def delete(self, bucket: str, key: str) -> bool:
        self._require_bucket(bucket)
        sql = "DELETE FROM objects WHERE bucket = ? AND key = ? RETURNING file"
        (row,) = await self._write((sql, (bucket, key.encode("utf-8"))))
        if row is None:
            return False
        self.files.discard(row[0])
        return True

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> ListPage:
        self._require_bucket(bucket)
        if max_keys == 0:
            return ListPage([], [], False, None)  # as S3: nothing asked, nothing truncated
        raw_prefix = prefix.encode("utf-8")
        raw_after = after.encode("utf-8")
        end = prefix_end(raw_prefix) if raw_prefix else None
        start, inclusive = (raw_after, False) if raw_after >= raw_prefix else (raw_prefix, True)
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = b""
        while True:
            jumped = False
            for key, size, etag, mtime, meta, checksum in self.index.scan(
                bucket, start, inclusive, end
            ):
                if len(objects) + len(prefixes) == max_keys:
                    return ListPage(objects, prefixes, True, last.decode("utf-8"))
                rest = key[len(raw_prefix) :]
                cut = rest.find(delimiter.encode("utf-8")) if delimiter else -1
                if cut < 0:
                    objects.append(object_info(key, size, etag, mtime, meta, checksum))
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
        self, source_bucket: str, source_key: str, bucket: str, key: str, meta: ObjectMeta | None,
        checksum_algorithm: str | None = None, condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        self._require_bucket(bucket)
        for _ in range(3):
            row, info, _ = self._lookup(source_bucket, source_key)
            try:
                linked = await asyncio.to_thread(self.files.link, row[0])
            except FileNotFoundError:
                continue  # replaced between the lookup and the link: look again
            checksum = info.checksum
            if checksum_algorithm is not None:
                try:
                    checksum = await asyncio.to_thread(
                        file_checksum, self.files.path(linked), checksum_algorithm
                    )
                except BaseException:
                    self.files.discard(linked)
                    raise
            digested = Digested(info.size, info.etag, checksum)
            return await self._commit_object(
                bucket, key, linked, digested, meta or info.meta, parts=info.parts,
                condition=condition,
            )  # fmt: skip
        raise NoSuchKey("the specified key does not exist")

    # -- multipart ---------------------------------------------------------

    async def create_upload(
        self, bucket: str, key: str, meta: ObjectMeta, checksum_algorithm: str | None = None,
        checksum_type: ChecksumType | None = None,
    ) -> Upload:  # fmt: skip
        self._require_bucket(bucket)
        # Ids that sort by creation time: one key's uploads are then listed in
        # the order they began, as S3 lists them, and upload-id-marker compares ids.
        upload_id = f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
        now = time.time()
        sql = (
            "INSERT INTO uploads (upload_id, bucket, key, meta, initiated, checksum_algorithm, "
            "checksum_type) SELECT ?, ?, ?, ?, ?, ?, ? "
            "WHERE EXISTS (SELECT 1 FROM buckets WHERE name = ?) RETURNING 1"
        )
        (row,) = await self._write(
            (
                sql,
                (
                    upload_id, bucket, key.encode("utf-8"), json.dumps(meta.to_json()), now,
                    checksum_algorithm, checksum_type, bucket,
                ),
            )
        )  # fmt: skip
        if row is None:  # the bucket was deleted meanwhile
            raise NoSuchBucket(f"no bucket named {bucket!r}")
        return Upload(upload_id, key, when(now), checksum_algorithm, checksum_type)

    def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Upload, ObjectMeta]:
        """The upload in progress and the metadata its object will have; NoSuchUpload if none."""
        sql = (
            "SELECT meta, initiated, checksum_algorithm, checksum_type FROM uploads "
            "WHERE upload_id = ? AND bucket = ? AND key = ?"
        )
        row = self.index.read_one(sql, (upload_id, bucket, key.encode("utf-8")))
        if row is None:
            self._require_bucket(bucket)
            raise NoSuchUpload("the specified multipart upload does not exist")
        meta, initiated, algorithm, kind = row
        upload = Upload(upload_id, key, when(initiated), algorithm, checksum_type(kind))
        return upload, ObjectMeta.from_json(json.loads(meta))

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        expected: Expected | None,
    ) -> Part:
        upload, _ = self._upload(bucket, key, upload_id)
        file, digested = await self.files.receive(body, expected, upload.checksum_algorithm)
        size, etag, checksum = digested.size, digested.etag, digested.checksum
        now = time.time()
        values = (upload_id, number, file, size, etag, now, checksum_to_text(checksum), upload_id)
        try:
            old, row = await self._write(
                ("SELECT file FROM parts WHERE upload_id = ? AND number = ?", (upload_id, number)),
                (
                    "INSERT INTO parts (upload_id, number, file, size, etag, mtime, checksum) "
                    "SELECT ?, ?, ?, ?, ?, ?, ? "
                    "WHERE EXISTS (SELECT 1 FROM uploads WHERE upload_id = ?) "
                    "ON CONFLICT (upload_id, number) DO UPDATE SET file = excluded.file, "
                    "size = excluded.size, etag = excluded.etag, mtime = excluded.mtime, "
                    "checksum = excluded.checksum RETURNING 1",
                    values,
                ),
            )
        except BaseException:
            self.files.discard(file)
            raise
        if row is None:
            self.files.discard(file)
            raise NoSuchUpload("the multipart upload was completed or aborted meanwhile")
        self.files.discard(old[0] if old else None)
        return Part(number, etag, size, when(now), checksum)

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
        self, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart],
        checksum: Checksum | None = None, condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        # An abort, another completion or a part uploaded again may change the
        # parts while they are joined: the commit checks that they did not, else
        # the completion starts over, and then finds the upload gone (NoSuchUpload)
        # or a listed part no longer the one uploaded (InvalidPart).
        for _ in range(3):
            try:
                return await self._complete(bucket, key, upload_id, parts, checksum, condition)
            except PartsChanged:
                continue
        raise NoSuchUpload("the multipart upload kept changing while it was being completed")

    async def _complete(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart],
        checksum: Checksum | None, condition: WriteCondition | None,
    ) -> ObjectInfo:  # fmt: skip
        upload, meta = self._upload(bucket, key, upload_id)
        stored = {
            number: StoredPart(file, size, etag, checksum_from_text(text))
            for number, file, size, etag, text in self.index.read_all(
                "SELECT number, file, size, etag, checksum FROM parts WHERE upload_id = ?",
                (upload_id,),
            )
        }
        check_parts(parts, stored, upload.checksum_algorithm)
        listed = [stored[part.number] for part in parts]
        algorithm = upload.checksum_algorithm
        # The bytes are checksummed as they are assembled when the object's checksum
        # is of them: FULL_OBJECT, or S3's default for an upload that named no algorithm.
        whole = (
            DEFAULT_CHECKSUM if algorithm is None
            else algorithm if upload.checksum_type == "FULL_OBJECT"
            else None
        )  # fmt: skip
        try:
            file, made = await asyncio.to_thread(
                self.files.concatenate, [part.file for part in listed], whole
            )
        except FileNotFoundError:  # a part was replaced, or the upload ended, meanwhile
            raise PartsChanged from None
        try:
            if algorithm is not None and whole is None:
                # _check_parts made sure every part listed has a checksum of this algorithm.
                made = composite(algorithm, [part.checksum for part in listed if part.checksum])
            check_object_checksum(checksum, made)
        except BaseException:
            self.files.discard(file)
            raise
        size = sum(part.size for part in listed)
        etag = multipart_etag([part.etag for part in listed])
        joined = {f"{number}:{part.file}" for number, part in stored.items()}

        def unchanged(row: Row | None) -> None:
            if row is None or row[0] is None or set((row[1] or "").split()) != joined:
                raise PartsChanged

        info = await self._commit_object(
            bucket, key, file, Digested(size, etag, made), meta,
            ("DELETE FROM parts WHERE upload_id = ?", (upload_id,)),
            ("DELETE FROM uploads WHERE upload_id = ?", (upload_id,)),
            parts=tuple(part.size for part in listed), condition=condition,
            guards=[
                (
                    "SELECT (SELECT 1 FROM uploads WHERE upload_id = ?), (SELECT "
                    "group_concat(number || ':' || file, ' ') FROM parts WHERE upload_id = ?)",
                    (upload_id, upload_id),
                    unchanged,
                )
            ],
        )  # fmt: skip
        self.files.discard(*(part.file for part in stored.values()))
        return info

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        # Only the upload of this bucket and key: an id alone must not reach another's parts.
        ours = (upload_id, bucket, key.encode("utf-8"))
        rows = await self._write(
            (_ABORT_FILES, (upload_id, *ours)),
            (_ABORT_PARTS, (upload_id, *ours)),
            (
                "DELETE FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ? RETURNING 1",
                ours,
            ),
        )
        if rows[2] is None:
            self._require_bucket(bucket)
            raise NoSuchUpload("the specified multipart upload does not exist")
        self.files.discard(*((rows[0][0] or "").split()))

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part]:
        self._upload(bucket, key, upload_id)
        rows = self.index.read_all(
            "SELECT number, etag, size, mtime, checksum FROM parts WHERE upload_id = ? "
            "ORDER BY number",
            (upload_id,),
        )
        return [
            Part(number, etag, size, when(mtime), checksum_from_text(text))
            for number, etag, size, mtime, text in rows
        ]

    async def list_uploads(
        self, bucket: str, *, prefix: str, delimiter: str, key_marker: str,
        upload_id_marker: str, max_uploads: int,
    ) -> UploadPage:  # fmt: skip
        self._require_bucket(bucket)
        raw_prefix, raw_marker = prefix.encode("utf-8"), key_marker.encode("utf-8")
        sql = (
            "SELECT upload_id, key, initiated, checksum_algorithm, checksum_type FROM uploads "
            "WHERE bucket = ? AND key >= ?"
        )
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
                (
                    Upload(upload_id, key.decode("utf-8"), when(at), algorithm, checksum_type(kind))
                    for upload_id, key, at, algorithm, kind in rows
                ),
                prefix=prefix, delimiter=delimiter, key_marker=key_marker, max_uploads=max_uploads,
            )  # fmt: skip

    def presign(
        self, bucket: str, key: str, method: str, expires: int, now: datetime | None
    ) -> str | None:
        return None  # shoestring's own S3 API answers for this backend
