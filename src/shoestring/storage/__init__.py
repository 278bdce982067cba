"""Object storage: buckets of objects on the filesystem or any S3 service.

    photos = app.storage.bucket("photos")
    await photos.put("cat.jpg", data)

The same buckets are served over an S3-compatible HTTP API (s3api/), so
boto3, the aws cli and rclone work against them unchanged.
"""

from shoestring.storage.bucket import Bucket
from shoestring.storage.errors import (
    BackendUnavailable,
    BadDigest,
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    InvalidBucketName,
    InvalidKey,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    StorageError,
)
from shoestring.storage.events import ObjectEvent
from shoestring.storage.objects import (
    BucketConfig,
    BucketInfo,
    Checksum,
    CompletedPart,
    CorsRule,
    ListPage,
    ObjectInfo,
    ObjectMeta,
    RangeRequest,
    StoredObject,
    WriteCondition,
)
from shoestring.storage.service import Storage

__all__ = [
    "BackendUnavailable",
    "BadDigest",
    "Bucket",
    "BucketAlreadyExists",
    "BucketConfig",
    "BucketInfo",
    "BucketNotEmpty",
    "Checksum",
    "CompletedPart",
    "CorsRule",
    "EntityTooLarge",
    "EntityTooSmall",
    "InvalidBucketName",
    "InvalidKey",
    "InvalidPart",
    "InvalidPartOrder",
    "InvalidRange",
    "ListPage",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "ObjectEvent",
    "ObjectInfo",
    "ObjectMeta",
    "PreconditionFailed",
    "RangeRequest",
    "Storage",
    "StorageError",
    "StoredObject",
    "WriteCondition",
]
