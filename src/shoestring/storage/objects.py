"""The values the storage API hands out: objects, listings, buckets, uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

MULTIPART_MIN_PART = 5 * 1024 * 1024  # S3: every part but the last is at least 5 MiB
MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a writer says about an object besides its bytes; returned with every read."""

    content_type: str = "application/octet-stream"
    metadata: Mapping[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix
    cache_control: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    expires: str | None = None  # the Expires header as the writer sent it, unparsed (as S3)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "content_type": self.content_type,
            "metadata": dict(self.metadata),
            "cache_control": self.cache_control,
            "content_disposition": self.content_disposition,
            "content_encoding": self.content_encoding,
        }
        # Only when set: rows written before these were kept read the same.
        if self.content_language is not None:
            data["content_language"] = self.content_language
        if self.expires is not None:
            data["expires"] = self.expires
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ObjectMeta:
        metadata = data.get("metadata") or {}
        assert isinstance(metadata, dict)
        return cls(
            content_type=str(data.get("content_type") or "application/octet-stream"),
            metadata={str(k): str(v) for k, v in metadata.items()},
            cache_control=_optional(data.get("cache_control")),
            content_disposition=_optional(data.get("content_disposition")),
            content_encoding=_optional(data.get("content_encoding")),
            content_language=_optional(data.get("content_language")),
            expires=_optional(data.get("expires")),
        )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


ChecksumType = Literal["FULL_OBJECT", "COMPOSITE"]


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """S3's conditional write (`If-None-Match: *`, `If-Match: "etag"`) of a put, copy or
    completed multipart upload.

    The backend checks it in the same step that makes the new object visible,
    so of two writers racing with `if_none_match`, exactly one succeeds.
    """

    if_none_match: bool = False  # only if no object is at the key
    if_match: str | None = None  # only if the object at the key has this ETag

    def check(self, etag: str | None) -> None:
        """Raise unless the object now at the key (its ETag; None: no object) allows the write.

        PreconditionFailed when it does not; NoSuchKey for `if_match` and no object, as S3.
        """
        from shoestring.storage.errors import NoSuchKey, PreconditionFailed

        if self.if_none_match and etag is not None:
            raise PreconditionFailed("an object already exists at this key (If-None-Match: *)")
        if self.if_match is not None:
            if etag is None:
                raise NoSuchKey("the specified key does not exist (If-Match)")
            if not _etags_match(self.if_match, etag):
                raise PreconditionFailed("the object's ETag is not the one If-Match names")


def _etags_match(header: str, etag: str) -> bool:
    wanted = etag.strip('"')
    return any(tag.strip().strip('"') in ("*", wanted) for tag in header.split(","))


@dataclass(frozen=True, slots=True)
class Checksum:
    """An `x-amz-checksum-*` value kept with an object or a part, as S3 keeps it.

    `algorithm` is lower-case, as in the header's name (`crc32`, `crc64nvme`,
    `sha256`...); `value` is base64. A COMPOSITE checksum (of a multipart
    object) is the checksum of its parts' checksums, with `-N` (the part count)
    appended; a FULL_OBJECT one is the checksum of the object's bytes.
    """

    algorithm: str
    value: str
    type: ChecksumType = "FULL_OBJECT"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What is known about a stored object without reading it."""

    key: str
    size: int
    etag: str  # quoted, as S3 sends it: '"md5hex"' or '"md5hex-N"' for multipart
    last_modified: datetime  # aware, UTC, whole seconds as HTTP dates carry them
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    # The checksum stored with the object, if it was uploaded with one. In listings its
    # value may be empty (an S3 service lists only algorithm and type): HEAD for it.
    checksum: Checksum | None = None
    # The sizes of a multipart object's parts, in order, where the backend keeps them.
    parts: tuple[int, ...] | None = None

    @property
    def content_type(self) -> str:
        return self.meta.content_type

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.meta.metadata


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """A `Range: bytes=...` header before the object's size is known.

    `first=None` is a suffix range (the last `last` bytes); `last=None` runs to the end.
    """

    first: int | None
    last: int | None

    def resolve(self, size: int) -> ByteRange:
        """The bytes this range selects of an object of `size` bytes; InvalidRange if none."""
        from shoestring.storage.errors import InvalidRange

        if self.first is None:
            if not self.last or size == 0:
                raise InvalidRange("the requested range is not satisfiable", size)
            return ByteRange(max(0, size - self.last), size - 1)
        if self.first >= size:
            raise InvalidRange("the requested range is not satisfiable", size)
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return ByteRange(self.first, end)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` to `end` inclusive, as in `Range: bytes=start-end`."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class ObjectBody:
    """An object's bytes: iterate for chunks, or `await read()` for all of them.

    Small objects of the fs backend arrive already read (`data`), so serving
    them costs no thread hop; large ones stream from `chunks`.
    """

    def __init__(
        self, *, data: bytes | None = None, chunks: AsyncIterator[bytes] | None = None
    ) -> None:
        self.data = data
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        if self.data is not None:
            if self.data:
                yield self.data
            return
        if self._chunks is not None:
            async for chunk in self._chunks:
                yield chunk

    async def read(self) -> bytes:
        if self.data is not None:
            return self.data
        return b"".join([chunk async for chunk in self])

    async def close(self) -> None:
        """Release the underlying file or connection if the body is not read to the end."""
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


@dataclass(slots=True)
class StoredObject:
    """An object read by `Bucket.get`: its info, the range served, and its body."""

    info: ObjectInfo
    body: ObjectBody
    range: ByteRange | None = None

    async def read(self) -> bytes:
        return await self.body.read()


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: objects, common prefixes, and where the next page starts."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_marker: str | None  # the last key or prefix of this page, when truncated


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created: datetime


@dataclass(frozen=True, slots=True)
class CorsRule:
    """One CORSRule of a bucket's CORS configuration."""

    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None


Access = Literal["private", "public-read"]


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """Per-bucket settings: who may read anonymously, and CORS for browsers.

    Buckets are unversioned: each object is its single `null` version.
    `versioning_suspended` only records that a client set versioning to
    Suspended (which behaves exactly so), to report it back as S3 would.
    """

    access: Access = "private"
    cors: tuple[CorsRule, ...] = ()
    versioning_suspended: bool = False


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress."""

    upload_id: str
    key: str
    initiated: datetime
    # The algorithm every part is checksummed with, and how the object's checksum is made.
    checksum_algorithm: str | None = None
    checksum_type: ChecksumType | None = None


@dataclass(frozen=True, slots=True)
class UploadPage:
    """One page of multipart uploads in progress, and where the next page starts.

    Uploads come in key order (UTF-8 bytes), one key's uploads in upload id
    order; with a delimiter, keys sharing a prefix up to it are rolled up into
    `prefixes`, as S3's CommonPrefixes. When `truncated`, the next page starts
    after `next_key_marker` (a key or a prefix) and `next_upload_id_marker`
    (None after a prefix: everything under it was rolled up).
    """

    uploads: list[Upload]
    prefixes: list[str]
    truncated: bool
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int
    last_modified: datetime
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """A part as CompleteMultipartUpload lists it: its number, ETag and (optional) checksum."""

    number: int
    etag: str
    checksum: Checksum | None = None
