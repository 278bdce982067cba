"""What a bucket name and an object key may be.

Keys are never turned into file names (the fs backend names files by random
ids and keeps keys in its index), so these checks are about S3 compatibility
and about keys surviving a trip through an XML listing, not about paths.
"""

from __future__ import annotations

import re

from shoestring.storage.errors import InvalidBucketName, InvalidKey, KeyTooLong

MAX_KEY_BYTES = 1024  # S3's limit, in UTF-8 bytes

# S3's rules for new buckets: 3-63 lowercase letters, digits, '.', '-';
# starting and ending with a letter or digit; not an IPv4 address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# Characters XML 1.0 cannot carry even escaped: a key holding one could never
# be listed, so it is refused up front.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def check_bucket_name(name: str) -> str:
    """`name` if it is a valid S3 bucket name, else InvalidBucketName saying why."""
    if not _BUCKET.match(name) or ".." in name or _IPV4.match(name):
        raise InvalidBucketName(
            f"bucket name {name!r} is invalid: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def check_key(key: str) -> str:
    """`key` if S3 would accept it, else InvalidKey saying why."""
    if not key:
        raise InvalidKey("object keys must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("object keys must be valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise KeyTooLong(f"object keys are at most {MAX_KEY_BYTES} bytes of UTF-8; this is {size}")
    if NOT_XML.search(key):
        raise InvalidKey(
            "object keys must not contain control characters other than tab and newline"
        )
    return key
