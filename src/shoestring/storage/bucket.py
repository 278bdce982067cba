"""`Bucket`: one bucket's objects, whichever backend holds them.

    photos = app.storage.bucket("photos")
    await photos.put("originals/cat.jpg", data, content_type="image/jpeg")
    obj = await photos.get("originals/cat.jpg")
    async for item in photos.list(prefix="originals/"): ...

Every write delivers an ObjectEvent to the bucket's triggers once it is
committed (`@photos.on_put`, durable jobs: see events.py).
The S3 API (s3api/) is built on these same methods.
"""

from __future__ import annotations

import builtins
import mimetypes
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shoestring.storage import checksums
from shoestring.storage.backend import Body
from shoestring.storage.digests import Expected, check_checksum_value
from shoestring.storage.events import Delivery, EventHook, EventKind, EventName, ObjectEvent
from shoestring.storage.keys import check_bucket_name, check_key
from shoestring.storage.objects import (
    Access,
    BucketConfig,
    Checksum,
    CompletedPart,
    CorsRule,
    ListPage,
    ObjectInfo,
    ObjectMeta,
    Part,
    RangeRequest,
    StoredObject,
    Upload,
    UploadPage,
    WriteCondition,
)

if TYPE_CHECKING:
    from shoestring.storage.service import Storage

DEFAULT_EXPIRES = 3600  # seconds a presigned URL stays valid unless told otherwise
MAX_EXPIRES = 7 * 24 * 3600  # SigV4's limit


def guess_type(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


class Bucket:
    """A handle on one bucket; cheap to create, holds no connection of its own."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = check_bucket_name(name)

    def __repr__(self) -> str:
        return f"Bucket({self.name!r})"

    @property
    def _backend(self) -> Backend:
        return self.storage.backend

    # -- objects -----------------------------------------------------------

    async def put(
        self,
        key: str,
        data: Body,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        cache_control: str | None = None,
        content_disposition: str | None = None,
        content_encoding: str | None = None,
        content_language: str | None = None,
        expires: str | None = None,
        checksum: Checksum | None = None,
        expected: Expected | None = None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Store `data` (bytes or an async iterable of bytes) at `key`; durable when it returns.

        The content type is guessed from the key when not given. `metadata`
        becomes the object's `x-amz-meta-*` headers. With a `checksum`
        (`Checksum("crc32", "<base64>")`), the data is verified against it
        (BadDigest, nothing stored, if it differs) and it is kept with the
        object, as S3 keeps an `x-amz-checksum-*` header.
        `condition=WriteCondition(if_none_match=True)` stores it only if no object
        is at `key` (`if_match=etag`: only over that version), else PreconditionFailed;
        the check is atomic with the write.
        """
        if checksum is not None:
            algorithm = checksums.checksum_algorithm(checksum.algorithm)
            check_checksum_value(algorithm, checksum.value)
            md5 = expected.content_md5 if expected else None
            expected = Expected(content_md5=md5, checksums={algorithm: checksum.value})
        meta = ObjectMeta(
            content_type=content_type or guess_type(key),
            metadata=dict(metadata or {}),
            cache_control=cache_control,
            content_disposition=content_disposition,
            content_encoding=content_encoding,
            content_language=content_language,
            expires=expires,
        )
        return await self.put_meta(key, data, meta, expected=expected, condition=condition)

    async def put_meta(
        self, key: str, data: Body, meta: ObjectMeta, *, expected: Expected | None = None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        """`put` with the object's metadata given as one ObjectMeta."""
        async with self._write("ObjectCreated:Put", key) as delivery:
            info = await self._backend.put(
                self.name, check_key(key), data, meta, expected, condition
            )
            delivery.committed(_event("ObjectCreated:Put", self.name, info))
        return info

    async def get(self, key: str, *, range: RangeRequest | None = None) -> StoredObject:
        """The object at `key` with a streaming body; NoSuchKey if there is none.

        `range=RangeRequest(0, 99)` reads the first 100 bytes only.
        """
        return await self._backend.get(self.name, check_key(key), range)

    async def read(self, key: str) -> bytes:
        """All bytes of the object at `key`."""
        return await (await self.get(key)).read()

    async def head(self, key: str) -> ObjectInfo:
        """What is known about the object at `key`, without reading it; NoSuchKey if absent."""
        return await self._backend.head(self.name, check_key(key))

    async def exists(self, key: str) -> bool:
        from shoestring.storage.errors import NoSuchKey

        try:
            await self.head(key)
        except NoSuchKey:
            return False
        return True

    async def delete(self, key: str) -> bool:
        """Delete the object at `key`; False if there was none."""
        async with self._write("ObjectRemoved:Delete", key) as delivery:
            deleted = await self._backend.delete(self.name, check_key(key))
            if deleted:
                delivery.committed(
                    ObjectEvent("ObjectRemoved:Delete", self.name, key, time=datetime.now(UTC))
                )
        return deleted

    async def list(
        self, *, prefix: str = "", delimiter: str = "", start_after: str = "", page_size: int = 1000
    ) -> AsyncIterator[ObjectInfo | str]:
        """Objects in key order (UTF-8 bytes), fetched a page at a time.

        With a `delimiter`, keys sharing a prefix up to it are rolled up and
        yielded once as that prefix (a str), as S3's CommonPrefixes.
        """
        after = start_after
        while True:
            page = await self.list_page(
                prefix=prefix, delimiter=delimiter, after=after, max_keys=page_size
            )
            merged: builtins.list[ObjectInfo | str] = [*page.objects, *page.prefixes]
            merged.sort(key=lambda item: (item if isinstance(item, str) else item.key).encode())
            for item in merged:
                yield item
            if not page.truncated or page.next_marker is None:
                return
            after = page.next_marker

    async def list_page(
        self, *, prefix: str = "", delimiter: str = "", after: str = "", max_keys: int = 1000
    ) -> ListPage:
        """One page of at most `max_keys` objects and prefixes after the key `after`."""
        return await self._backend.list_objects(
            self.name, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )

    async def copy(
        self,
        source_key: str,
        key: str,
        *,
        source_bucket: str | None = None,
        meta: ObjectMeta | None = None,
        checksum_algorithm: str | None = None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Copy `source_key` (of this bucket or `source_bucket`) to `key` in this bucket.

        `meta=None` keeps the source's content type and metadata. The copy
        keeps the source's checksum, or with `checksum_algorithm` ("crc32",
        "sha256"...) gets a new one of that algorithm, computed over its bytes.
        `condition` is about the object at `key`, as for `put`.
        """
        source = check_bucket_name(source_bucket) if source_bucket else self.name
        algorithm = checksums.checksum_algorithm(checksum_algorithm) if checksum_algorithm else None
        async with self._write("ObjectCreated:Copy", key) as delivery:
            info = await self._backend.copy(
                source, check_key(source_key), self.name, check_key(key), meta, algorithm,
                condition,
            )  # fmt: skip
            delivery.committed(_event("ObjectCreated:Copy", self.name, info))
        return info

    # -- presigned URLs ----------------------------------------------------

    def presign_get(self, key: str, *, expires: int = DEFAULT_EXPIRES) -> str:
        """A URL anyone can GET the object with for `expires` seconds."""
        return self.storage.presign(self.name, check_key(key), "GET", _expiry(expires))

    def presign_put(self, key: str, *, expires: int = DEFAULT_EXPIRES) -> str:
        """A URL anyone can PUT the object's bytes to for `expires` seconds (e.g. from a browser)."""
        return self.storage.presign(self.name, check_key(key), "PUT", _expiry(expires))

    # -- multipart ---------------------------------------------------------

    async def create_upload(
        self,
        key: str,
        meta: ObjectMeta,
        *,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> Upload:
        """Begin a multipart upload; with `checksum_algorithm`, every part is checksummed.

        `checksum_type` is how the object's checksum is made of the parts':
        FULL_OBJECT or COMPOSITE, by default as S3 chooses (checksums.py).
        """
        algorithm = checksums.checksum_algorithm(checksum_algorithm) if checksum_algorithm else None
        kind = checksums.upload_checksum_type(algorithm, checksum_type)
        return await self._backend.create_upload(self.name, check_key(key), meta, algorithm, kind)

    async def upload_part(
        self, key: str, upload_id: str, number: int, data: Body, expected: Expected | None = None
    ) -> Part:
        return await self._backend.upload_part(
            self.name, check_key(key), upload_id, number, data, expected
        )

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        number: int,
        source_bucket: str,
        source_key: str,
        range: RangeRequest | None = None,
    ) -> Part:
        return await self._backend.upload_part_copy(
            self.name, check_key(key), upload_id, number,
            check_bucket_name(source_bucket), check_key(source_key), range,
        )  # fmt: skip

    async def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart | tuple[int, str]],
        *,
        checksum: Checksum | None = None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Assemble the listed parts (`CompletedPart`s, or (number, ETag) pairs) into the object.

        A part's listed checksum must be the one it was uploaded with
        (InvalidPart), and `checksum`, the object's if the caller knows it,
        the one made (BadDigest); either way nothing is stored. `condition` is
        about the object at `key`, as for `put` (the upload stays if it fails).
        """
        listed = [p if isinstance(p, CompletedPart) else CompletedPart(*p) for p in parts]
        name: EventName = "ObjectCreated:CompleteMultipartUpload"
        async with self._write(name, key) as delivery:
            info = await self._backend.complete_upload(
                self.name, check_key(key), upload_id, listed, checksum, condition
            )
            delivery.committed(_event(name, self.name, info))
        return info

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self._backend.abort_upload(self.name, check_key(key), upload_id)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        return await self._backend.list_parts(self.name, check_key(key), upload_id)

    async def list_uploads(self, prefix: str = "") -> builtins.list[Upload]:
        """Every multipart upload in progress under `prefix`, in key order."""
        uploads: builtins.list[Upload] = []
        key_marker = upload_id_marker = ""
        while True:
            page = await self.list_uploads_page(
                prefix=prefix, key_marker=key_marker, upload_id_marker=upload_id_marker
            )
            uploads += page.uploads
            if not page.truncated or page.next_key_marker is None:
                return uploads
            key_marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker or ""

    async def list_uploads_page(
        self, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        upload_id_marker: str = "", max_uploads: int = 1000,
    ) -> UploadPage:  # fmt: skip
        """One page of at most `max_uploads` uploads and prefixes after the markers."""
        return await self._backend.list_uploads(
            self.name, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, max_uploads=max_uploads,
        )  # fmt: skip

    # -- the bucket itself -------------------------------------------------

    async def create(self, *, public: bool = False) -> None:
        """Create the bucket; BucketAlreadyExists if it does."""
        access: Access = "public-read" if public else "private"
        await self._backend.create_bucket(self.name, BucketConfig(access=access))

    async def delete_bucket(self) -> None:
        """Delete the bucket; BucketNotEmpty if it holds objects. Uploads in progress are aborted."""
        await self._backend.delete_bucket(self.name)

    async def config(self) -> BucketConfig:
        return await self._backend.bucket_config(self.name)

    async def set_access(self, access: Access) -> None:
        """`public-read`: anyone may GET objects without signing; `private`: only keys."""
        config = await self.config()
        await self._backend.set_bucket_config(self.name, replace(config, access=access))

    async def set_cors(self, rules: Sequence[CorsRule]) -> None:
        """Let browsers on other origins call the S3 API for this bucket (empty: nobody)."""
        config = await self.config()
        await self._backend.set_bucket_config(self.name, replace(config, cors=tuple(rules)))

    async def suspend_versioning(self) -> None:
        """Record S3's versioning status Suspended; buckets keep no versions either way."""
        config = await self.config()
        await self._backend.set_bucket_config(self.name, replace(config, versioning_suspended=True))

    # -- events --------------------------------------------------------------

    def on_put(self, pattern: str = "*", **job_options: Any) -> Callable[[EventHook], EventHook]:
        """Run the decorated async function, as a durable job, after each write under `pattern`.

        It receives an ObjectEvent. `job_options` are `@app.job`'s (retries,
        backoff, timeout, queue).
        """
        return self._on("put", pattern, job_options)

    def on_delete(self, pattern: str = "*", **job_options: Any) -> Callable[[EventHook], EventHook]:
        """Run the decorated async function, as a durable job, after each delete under `pattern`."""
        return self._on("delete", pattern, job_options)

    def _on(
        self, kind: EventKind, pattern: str, job_options: dict[str, Any]
    ) -> Callable[[EventHook], EventHook]:
        def decorator(hook: EventHook) -> EventHook:
            self.storage.triggers.add(self.name, kind, pattern, hook, **job_options)
            return hook

        return decorator

    def _write(self, name: EventName, key: str) -> AbstractAsyncContextManager[Delivery]:
        return self.storage.triggers.write(self.name, name, key)


def _event(name: EventName, bucket: str, info: ObjectInfo) -> ObjectEvent:
    return ObjectEvent(name, bucket, info.key, info.size, info.etag, info.last_modified)


def _expiry(expires: int) -> int:
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1 to {MAX_EXPIRES} seconds, not {expires}")
    return expires


if TYPE_CHECKING:
    from shoestring.storage.backend import Backend
