"""The interface both storage backends implement (fs.py, s3.py).

Backends know nothing of events, access keys or HTTP: `Storage` and
`Bucket` add those on top, the same way for both.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from datetime import datetime
from typing import Protocol

from shoestring.storage.digests import Expected
from shoestring.storage.objects import (
    BucketConfig,
    BucketInfo,
    Checksum,
    ChecksumType,
    CompletedPart,
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

Body = AsyncIterable[bytes] | bytes


class Backend(Protocol):
    """Buckets and objects on some medium: a directory, or an S3 service."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the medium cannot serve requests right now."""
        ...

    # -- buckets ---------------------------------------------------------

    async def create_bucket(self, name: str, config: BucketConfig) -> None: ...

    async def delete_bucket(self, name: str) -> None:
        """Delete the bucket holding no objects, aborting its uploads in progress (as S3)."""
        ...

    async def list_buckets(self) -> list[BucketInfo]: ...

    async def bucket_config(self, name: str) -> BucketConfig:
        """The bucket's config; NoSuchBucket if it does not exist."""
        ...

    async def set_bucket_config(self, name: str, config: BucketConfig) -> None: ...

    # -- objects ---------------------------------------------------------

    async def put(
        self, bucket: str, key: str, body: Body, meta: ObjectMeta, expected: Expected | None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        """Store the body durably, then make it visible under `key` in one step.

        The checksum the body was verified against (if any) is kept with it.
        `condition` is checked in that same step (PreconditionFailed: nothing changes).
        """
        ...

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """The object's info, its stored checksum included."""
        ...

    async def get(
        self, bucket: str, key: str, byte_range: RangeRequest | None = None
    ) -> StoredObject:
        """The object; its info carries the stored checksum unless a range was asked for."""
        ...

    async def delete(self, bucket: str, key: str) -> bool:
        """Delete the object; False if there was none (not an error, as in S3)."""
        ...

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> ListPage:
        """Keys after `after` in UTF-8 byte order, rolled up at `delimiter` if given."""
        ...

    async def copy(
        self, source_bucket: str, source_key: str, bucket: str, key: str, meta: ObjectMeta | None,
        checksum_algorithm: str | None = None, condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        """Copy an object; `meta=None` keeps the source's metadata; `condition` as for put.

        The copy keeps the source's checksum, or gets a FULL_OBJECT checksum
        of `checksum_algorithm` when one is named.
        """
        ...

    # -- multipart -------------------------------------------------------

    async def create_upload(
        self, bucket: str, key: str, meta: ObjectMeta, checksum_algorithm: str | None = None,
        checksum_type: ChecksumType | None = None,
    ) -> Upload:  # fmt: skip
        """Begin an upload whose parts are checksummed with `checksum_algorithm` (if named).

        `checksum_type` (checked by the caller: checksums.upload_checksum_type)
        says how the object's checksum is made of the parts'.
        """
        ...

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        expected: Expected | None,
    ) -> Part:
        """Store a part; with the upload's algorithm checksummed, and any other refused."""
        ...

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        source_bucket: str,
        source_key: str,
        byte_range: RangeRequest | None,
    ) -> Part: ...

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart],
        checksum: Checksum | None = None, condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        """Assemble the listed parts into the object, with its checksum as the upload asked.

        InvalidPart if a part's ETag or listed checksum is not what was uploaded;
        BadDigest if `checksum` (the client's for the object) is not the one made;
        PreconditionFailed if `condition` fails. In each case the upload stays.
        NoSuchUpload if it was aborted or completed meanwhile.
        """
        ...

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part]: ...

    async def list_uploads(
        self, bucket: str, *, prefix: str, delimiter: str, key_marker: str,
        upload_id_marker: str, max_uploads: int,
    ) -> UploadPage:  # fmt: skip
        """Uploads in progress after the markers, as S3's ListMultipartUploads pages them."""
        ...

    # -- signing ---------------------------------------------------------

    def presign(
        self, bucket: str, key: str, method: str, expires: int, now: datetime | None
    ) -> str | None:
        """A presigned URL the medium itself answers, or None to use shoestring's S3 API."""
        ...
