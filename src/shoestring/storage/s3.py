"""The scale-out backend: the same buckets on any S3 service, through boto3.

boto3 is synchronous; every call runs on a small thread pool of this
backend's own, so the event loop never waits on the network. Bucket `name`
lives in the service's bucket `<bucket_prefix><name>`. What S3 itself cannot
hold for us (public-read and CORS as shoestring's S3 API applies them) is a
small JSON object at CONFIG_KEY in each bucket, hidden from listings.

Checksums go to the service as boto3's parameters (ChecksumCRC32=...): the
one a client's upload was verified against, never one boto3 adds by itself
(`request_checksum_calculation="when_required"`), so the service keeps what
the client sent; they are read back with ChecksumMode="ENABLED".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_to_aware_datetime

from shoestring.storage import errors
from shoestring.storage.backend import Body
from shoestring.storage.checksums import checksum_type, member_name, put_algorithm
from shoestring.storage.digests import CHECKSUMS, Digested, DigestingReader, Expected, iterate
from shoestring.storage.fs_index import config_from_json, config_to_json
from shoestring.storage.objects import (
    BucketConfig,
    BucketInfo,
    ByteRange,
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

if TYPE_CHECKING:
    from shoestring.config import StorageSettings

T = TypeVar("T")

CONFIG_KEY = ".shoestring/bucket.json"
READ_CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # bodies up to this size are not written to a temp file

_ERRORS: dict[str, type[errors.StorageError]] = {
    "NoSuchBucket": errors.NoSuchBucket,
    "NoSuchKey": errors.NoSuchKey,
    "NoSuchUpload": errors.NoSuchUpload,
    "BucketAlreadyExists": errors.BucketAlreadyExists,
    "BucketAlreadyOwnedByYou": errors.BucketAlreadyExists,
    "BucketNotEmpty": errors.BucketNotEmpty,
    "InvalidBucketName": errors.InvalidBucketName,
    "KeyTooLongError": errors.KeyTooLong,
    "InvalidRange": errors.InvalidRange,
    "EntityTooLarge": errors.EntityTooLarge,
    "BadDigest": errors.BadDigest,
    # S3 refuses a checksum of the wrong algorithm or type so: the only
    # InvalidRequest what this backend sends should meet.
    "InvalidRequest": errors.InvalidChecksum,
    "InvalidPart": errors.InvalidPart,
    "InvalidPartOrder": errors.InvalidPartOrder,
    "EntityTooSmall": errors.EntityTooSmall,
    "PreconditionFailed": errors.PreconditionFailed,
    # S3's answer to the loser of two conditional writes racing for one key.
    "ConditionalRequestConflict": errors.PreconditionFailed,
}


def _translate(
    exc: Exception, *, missing: type[errors.StorageError] = errors.NoSuchKey
) -> Exception:
    """A boto3 error as the storage error of the same meaning."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in ("404", "NotFound"):  # HEAD answers carry no error document
            return missing("not found")
        kind = _ERRORS.get(code)
        if kind is not None:
            return kind(message)
        return errors.BackendUnavailable(f"the S3 service answered {code}: {message}")
    return errors.BackendUnavailable(f"the S3 service is unreachable: {type(exc).__name__}")


def _meta_args(meta: ObjectMeta) -> dict[str, Any]:
    args: dict[str, Any] = {"ContentType": meta.content_type, "Metadata": dict(meta.metadata)}
    for name, value in (
        ("CacheControl", meta.cache_control),
        ("ContentDisposition", meta.content_disposition),
        ("ContentEncoding", meta.content_encoding),
        ("ContentLanguage", meta.content_language),
    ):
        if value:
            args[name] = value
    if meta.expires:
        # boto3 sends Expires only as a date; a value that is none already means
        # "expired" (RFC 9111 §5.3), as no Expires at all nearly does.
        with contextlib.suppress(ValueError, TypeError, OverflowError):
            args["Expires"] = parse_to_aware_datetime(meta.expires)
    return args


def _condition_args(condition: WriteCondition | None) -> dict[str, Any]:
    """boto3's IfNoneMatch/IfMatch of a conditional write: the service checks it atomically."""
    args: dict[str, Any] = {}
    if condition is not None:
        if condition.if_none_match:
            args["IfNoneMatch"] = "*"
        if condition.if_match is not None:
            args["IfMatch"] = condition.if_match
    return args


def _expires(response: Mapping[str, Any]) -> str | None:
    text = response.get("ExpiresString")
    if text:
        return str(text)
    when = response.get("Expires")
    return format_datetime(when.astimezone(UTC), usegmt=True) if when else None


def _checksum_args(checksum: Checksum | None) -> dict[str, Any]:
    return {} if checksum is None else {member_name(checksum.algorithm): checksum.value}


def _checksum(response: Mapping[str, Any]) -> Checksum | None:
    """The checksum in a boto3 response (of an object, a part or an upload), if any."""
    for algorithm in CHECKSUMS:
        value = response.get(member_name(algorithm))
        if value:
            named = checksum_type(response.get("ChecksumType"))
            return Checksum(
                algorithm, value, named or ("COMPOSITE" if "-" in value else "FULL_OBJECT")
            )
    return None


def _part(listed: Mapping[str, Any]) -> Part:
    """A part of a ListParts response."""
    when = listed["LastModified"].astimezone(UTC)
    return Part(listed["PartNumber"], listed["ETag"], int(listed["Size"]), when, _checksum(listed))


def _upload(listed: Mapping[str, Any]) -> Upload:
    """An upload of a ListMultipartUploads response."""
    algorithm = listed.get("ChecksumAlgorithm")
    return Upload(
        listed["UploadId"], listed["Key"], listed["Initiated"].astimezone(UTC),
        algorithm.lower() if algorithm else None, checksum_type(listed.get("ChecksumType")),
    )  # fmt: skip


def _listed_checksum(listed: dict[str, Any]) -> Checksum | None:
    """The algorithm and type a listing names; S3 lists no value (HEAD the object for it)."""
    algorithms = listed.get("ChecksumAlgorithm") or []
    if not algorithms:
        return None
    return Checksum(algorithms[0].lower(), "", listed.get("ChecksumType") or "FULL_OBJECT")


def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")),
        last_modified=response["LastModified"].astimezone(UTC).replace(microsecond=0),
        meta=ObjectMeta(
            content_type=response.get("ContentType") or "application/octet-stream",
            metadata=dict(response.get("Metadata") or {}),
            cache_control=response.get("CacheControl"),
            content_disposition=response.get("ContentDisposition"),
            content_encoding=response.get("ContentEncoding"),
            content_language=response.get("ContentLanguage"),
            expires=_expires(response),
        ),
        checksum=_checksum(response),
    )


class S3Backend:
    """Buckets and objects in an S3 service (see the module docstring)."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.prefix = settings.bucket_prefix
        self._pool: ThreadPoolExecutor | None = None
        self._client: Any = None

    def _real(self, bucket: str) -> str:
        return self.prefix + bucket

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="storage-s3")
        settings = self.settings
        credentials: dict[str, Any] = {}
        if settings.access_key_id:
            credentials = {
                "aws_access_key_id": settings.access_key_id,
                "aws_secret_access_key": settings.secret_access_key.get_secret_value(),
            }
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint or None,
            region_name=settings.region,
            config=Config(
                s3={"addressing_style": "path"}
                if settings.endpoint
                else {"addressing_style": "auto"},
                signature_version="s3v4",  # presigned URLs default to SigV2 otherwise
                request_checksum_calculation="when_required",  # see the module docstring
                max_pool_connections=32,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
            **credentials,
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _call(
        self, call: Callable[[], T], *, missing: type[errors.StorageError] = errors.NoSuchKey
    ) -> T:
        if self._pool is None:
            raise RuntimeError("the storage backend is not open: start the app first")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, missing=missing) from exc

    async def ping(self) -> None:
        await self._call(self._client.list_buckets)

    # -- buckets -----------------------------------------------------------

    async def create_bucket(self, name: str, config: BucketConfig) -> None:
        args: dict[str, Any] = {"Bucket": self._real(name)}
        if self.settings.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        await self._call(lambda: self._client.create_bucket(**args))
        await self.set_bucket_config(name, config)

    async def delete_bucket(self, name: str) -> None:
        page = await self.list_objects(name, prefix="", delimiter="", after="", max_keys=1)
        if page.objects:
            raise errors.BucketNotEmpty(f"bucket {name!r} is not empty: delete its objects first")
        real = self._real(name)
        await self._call(lambda: self._client.delete_object(Bucket=real, Key=CONFIG_KEY))
        await self._call(
            lambda: self._client.delete_bucket(Bucket=real), missing=errors.NoSuchBucket
        )

    async def list_buckets(self) -> list[BucketInfo]:
        response = await self._call(self._client.list_buckets)
        return [
            BucketInfo(b["Name"][len(self.prefix) :], b["CreationDate"].astimezone(UTC))
            for b in response.get("Buckets", [])
            if b["Name"].startswith(self.prefix)
        ]

    async def bucket_config(self, name: str) -> BucketConfig:
        real = self._real(name)
        try:
            response = await self._call(
                lambda: self._client.get_object(Bucket=real, Key=CONFIG_KEY)
            )
        except errors.NoSuchKey:
            return BucketConfig()  # a bucket made outside shoestring: private, no CORS
        body = await self._call(response["Body"].read)
        return config_from_json(body.decode("utf-8"))

    async def set_bucket_config(self, name: str, config: BucketConfig) -> None:
        real = self._real(name)
        data = config_to_json(config).encode("utf-8")
        await self._call(
            lambda: self._client.put_object(
                Bucket=real, Key=CONFIG_KEY, Body=data, ContentType="application/json"
            ),
            missing=errors.NoSuchBucket,
        )

    # -- objects -----------------------------------------------------------

    async def _spool(
        self, body: Body, expected: Expected | None, algorithm: str | None = None
    ) -> tuple[Any, Digested]:
        """The body in a temp file (in memory while small), its digests checked.

        `algorithm` is checksummed whether or not the client sent a value for it.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        reader = DigestingReader(expected, self.settings.max_object_size, algorithm=algorithm)
        try:
            async for chunk in iterate(body):
                reader.update(chunk)
                spool.write(chunk)
            digested = reader.finish(body)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, digested

    def _check_key(self, key: str) -> None:
        if key.startswith(".shoestring/"):
            raise errors.InvalidKey("keys under .shoestring/ are reserved by the s3 backend")

    async def put(
        self, bucket: str, key: str, body: Body, meta: ObjectMeta, expected: Expected | None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        self._check_key(key)
        spool, digested = await self._spool(body, expected, put_algorithm(expected))
        size, etag, checksum = digested.size, digested.etag, digested.checksum
        md5 = base64.b64encode(bytes.fromhex(etag.strip('"'))).decode()
        real = self._real(bucket)
        try:
            await self._call(
                lambda: self._client.put_object(
                    Bucket=real, Key=key, Body=spool, ContentLength=size, ContentMD5=md5,
                    **_meta_args(meta), **_checksum_args(checksum), **_condition_args(condition),
                ),
                missing=errors.NoSuchBucket,
            )  # fmt: skip
        finally:
            spool.close()
        now = datetime.now(UTC).replace(microsecond=0)
        return ObjectInfo(key, size, etag, now, meta, checksum)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        self._check_key(key)
        real = self._real(bucket)
        try:
            response = await self._call(
                lambda: self._client.head_object(Bucket=real, Key=key, ChecksumMode="ENABLED")
            )
        except errors.NoSuchKey:
            await self.bucket_config(bucket)  # NoSuchBucket if that is what is missing
            raise
        return _info(key, response)

    async def get(
        self, bucket: str, key: str, byte_range: RangeRequest | None = None
    ) -> StoredObject:
        self._check_key(key)
        real = self._real(bucket)
        args: dict[str, Any] = {"Bucket": real, "Key": key, "ChecksumMode": "ENABLED"}
        if byte_range is not None:
            first = "" if byte_range.first is None else str(byte_range.first)
            last = "" if byte_range.last is None else str(byte_range.last)
            args["Range"] = f"bytes={first}-{last}"
        try:
            response = await self._call(lambda: self._client.get_object(**args))
        except errors.NoSuchKey:
            await self.bucket_config(bucket)
            raise
        info = _info(key, response)
        span = None
        content_range = response.get("ContentRange")
        if content_range:
            spec, _, total = content_range.removeprefix("bytes ").partition("/")
            start, _, end = spec.partition("-")
            span = ByteRange(int(start), int(end))
            info = ObjectInfo(key, int(total), info.etag, info.last_modified, info.meta, None)
        return StoredObject(info, ObjectBody(chunks=self._stream(response["Body"])), span)

    async def _stream(self, body: Any) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self._call(lambda: body.read(READ_CHUNK))
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def delete(self, bucket: str, key: str) -> bool:
        try:
            await self.head(bucket, key)
        except errors.NoSuchKey:
            return False
        real = self._real(bucket)
        await self._call(lambda: self._client.delete_object(Bucket=real, Key=key))
        return True

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> ListPage:
        args: dict[str, Any] = {"Bucket": self._real(bucket), "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            args["Delimiter"] = delimiter
        if after:
            args["StartAfter"] = after
        response = await self._call(
            lambda: self._client.list_objects_v2(**args), missing=errors.NoSuchBucket
        )
        objects = [
            ObjectInfo(
                o["Key"],
                int(o["Size"]),
                o["ETag"],
                o["LastModified"].astimezone(UTC).replace(microsecond=0),
                checksum=_listed_checksum(o),
            )
            for o in response.get("Contents", [])
            if not o["Key"].startswith(".shoestring/")
        ]
        prefixes = [
            p["Prefix"] for p in response.get("CommonPrefixes", []) if p["Prefix"] != ".shoestring/"
        ]
        truncated = bool(response.get("IsTruncated"))
        names = [o["Key"] for o in response.get("Contents", [])]
        names += [p["Prefix"] for p in response.get("CommonPrefixes", [])]
        last = max(names, key=lambda n: n.encode("utf-8")) if names else None
        return ListPage(objects, prefixes, truncated, last if truncated else None)

    async def copy(
        self, source_bucket: str, source_key: str, bucket: str, key: str, meta: ObjectMeta | None,
        checksum_algorithm: str | None = None, condition: WriteCondition | None = None,
    ) -> ObjectInfo:  # fmt: skip
        self._check_key(source_key)
        self._check_key(key)
        args: dict[str, Any] = {
            "Bucket": self._real(bucket),
            "Key": key,
            "CopySource": {"Bucket": self._real(source_bucket), "Key": source_key},
            **_condition_args(condition),
        }
        if meta is not None:
            args.update(_meta_args(meta), MetadataDirective="REPLACE")
        if checksum_algorithm is not None:
            args["ChecksumAlgorithm"] = checksum_algorithm.upper()
        await self._call(lambda: self._client.copy_object(**args))
        return await self.head(bucket, key)

    # -- multipart ---------------------------------------------------------

    async def create_upload(
        self, bucket: str, key: str, meta: ObjectMeta, checksum_algorithm: str | None = None,
        checksum_type: ChecksumType | None = None,
    ) -> Upload:  # fmt: skip
        self._check_key(key)
        args: dict[str, Any] = {"Bucket": self._real(bucket), "Key": key, **_meta_args(meta)}
        if checksum_algorithm is not None:
            args["ChecksumAlgorithm"] = checksum_algorithm.upper()
        if checksum_type is not None:
            args["ChecksumType"] = checksum_type
        response = await self._call(
            lambda: self._client.create_multipart_upload(**args), missing=errors.NoSuchBucket
        )
        now = datetime.now(UTC).replace(microsecond=0)
        return Upload(response["UploadId"], key, now, checksum_algorithm, checksum_type)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        expected: Expected | None,
    ) -> Part:
        spool, digested = await self._spool(body, expected)
        real = self._real(bucket)
        try:
            response = await self._call(
                lambda: self._client.upload_part(
                    Bucket=real, Key=key, UploadId=upload_id, PartNumber=number, Body=spool,
                    ContentLength=digested.size, **_checksum_args(digested.checksum),
                ),
                missing=errors.NoSuchUpload,
            )  # fmt: skip
        finally:
            spool.close()
        return Part(
            number, response.get("ETag", digested.etag), digested.size,
            datetime.now(UTC).replace(microsecond=0), _checksum(response) or digested.checksum,
        )  # fmt: skip

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
        # The service checks the parts' ETags and checksums, and makes the object's.
        listed = [
            {"PartNumber": part.number, "ETag": part.etag, **_checksum_args(part.checksum)}
            for part in parts
        ]
        args: dict[str, Any] = {
            "Bucket": self._real(bucket), "Key": key, "UploadId": upload_id,
            "MultipartUpload": {"Parts": listed}, **_checksum_args(checksum),
            **_condition_args(condition),
        }  # fmt: skip
        if checksum is not None:
            args["ChecksumType"] = checksum.type
        await self._call(
            lambda: self._client.complete_multipart_upload(**args), missing=errors.NoSuchUpload
        )
        return await self.head(bucket, key)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        real = self._real(bucket)
        await self._call(
            lambda: self._client.abort_multipart_upload(Bucket=real, Key=key, UploadId=upload_id),
            missing=errors.NoSuchUpload,
        )

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part]:
        real = self._real(bucket)
        response = await self._call(
            lambda: self._client.list_parts(Bucket=real, Key=key, UploadId=upload_id),
            missing=errors.NoSuchUpload,
        )
        return [_part(p) for p in response.get("Parts", [])]

    async def list_uploads(
        self, bucket: str, *, prefix: str, delimiter: str, key_marker: str,
        upload_id_marker: str, max_uploads: int,
    ) -> UploadPage:  # fmt: skip
        args: dict[str, Any] = {
            "Bucket": self._real(bucket), "Prefix": prefix, "MaxUploads": max_uploads,
        }  # fmt: skip
        for name, value in (
            ("Delimiter", delimiter), ("KeyMarker", key_marker), ("UploadIdMarker", upload_id_marker)
        ):  # fmt: skip
            if value:
                args[name] = value
        response = await self._call(
            lambda: self._client.list_multipart_uploads(**args), missing=errors.NoSuchBucket
        )
        truncated = bool(response.get("IsTruncated"))
        return UploadPage(
            [_upload(u) for u in response.get("Uploads", [])],
            [p["Prefix"] for p in response.get("CommonPrefixes", [])],
            truncated,
            response.get("NextKeyMarker") if truncated else None,
            response.get("NextUploadIdMarker") or None if truncated else None,
        )

    # -- signing -----------------------------------------------------------

    def presign(
        self, bucket: str, key: str, method: str, expires: int, now: datetime | None
    ) -> str | None:
        operation = "get_object" if method == "GET" else "put_object"
        url: str = self._client.generate_presigned_url(
            operation, Params={"Bucket": self._real(bucket), "Key": key}, ExpiresIn=expires
        )
        return url
