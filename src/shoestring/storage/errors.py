"""Errors of object storage.

    StorageError                 anything the storage API raises on purpose
    ├── NoSuchBucket             the bucket does not exist
    ├── NoSuchKey                the bucket has no object with that key
    ├── NoSuchUpload             the multipart upload does not exist (completed or aborted)
    ├── BucketAlreadyExists      create_bucket of a name already taken
    ├── BucketNotEmpty           delete_bucket of a bucket that still holds objects
    ├── InvalidBucketName        the name breaks S3's bucket naming rules
    ├── InvalidKey               the key breaks S3's key rules (empty, over 1024 bytes, NUL)
    ├── InvalidRange             a byte range outside the object
    ├── EntityTooLarge           the object is larger than `storage.max_object_size`
    ├── BadDigest                the body does not match its Content-MD5 or checksum; nothing stored
    ├── InvalidChecksum          a checksum is malformed, doubled, missing or of the wrong algorithm
    ├── InvalidPart              CompleteMultipartUpload names a part that was not uploaded
    ├── InvalidPartOrder         ... or lists parts out of ascending order
    ├── EntityTooSmall           ... or a part but the last is under 5 MiB
    ├── PreconditionFailed       a conditional write (If-None-Match: *, If-Match) whose condition failed
    └── BackendUnavailable       the S3 service behind the s3 backend failed or is unreachable

Each maps to the S3 error code of the same name (s3api/errors.py), so the
HTTP API and the Python API agree on what went wrong.
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class StorageError(ShoestringError):
    """Base class of object storage errors."""

    code = "InternalError"


class NoSuchBucket(StorageError):
    code = "NoSuchBucket"


class NoSuchKey(StorageError):
    code = "NoSuchKey"


class NoSuchUpload(StorageError):
    code = "NoSuchUpload"


class BucketAlreadyExists(StorageError):
    code = "BucketAlreadyOwnedByYou"


class BucketNotEmpty(StorageError):
    code = "BucketNotEmpty"


class InvalidBucketName(StorageError, ValueError):
    code = "InvalidBucketName"


class InvalidKey(StorageError, ValueError):
    code = "InvalidArgument"


class KeyTooLong(InvalidKey):
    code = "KeyTooLongError"


class InvalidRange(StorageError):
    code = "InvalidRange"

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size  # the object's, for `Content-Range: bytes */size` (RFC 9110 §15.5.17)


class EntityTooLarge(StorageError):
    code = "EntityTooLarge"


class BadDigest(StorageError):
    code = "BadDigest"


class InvalidDigest(StorageError):
    code = "InvalidDigest"


class InvalidChecksum(StorageError, ValueError):
    code = "InvalidRequest"


class InvalidPart(StorageError):
    code = "InvalidPart"


class InvalidPartOrder(StorageError):
    code = "InvalidPartOrder"


class EntityTooSmall(StorageError):
    code = "EntityTooSmall"


class PreconditionFailed(StorageError):
    code = "PreconditionFailed"


class BackendUnavailable(StorageError):
    code = "ServiceUnavailable"
