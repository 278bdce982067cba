"""Object operations of the S3 API: put, get, head, delete (one or many), copy.

An object's stored checksum goes out with GET and HEAD only when asked for
(`x-amz-checksum-mode: ENABLED`) and the whole object is read: S3 leaves it
out of a range, whose bytes it does not describe.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from shoestring.storage.bucket import Bucket
from shoestring.storage.digests import Expected
from shoestring.storage.errors import StorageError
from shoestring.storage.keys import check_bucket_name, check_key
from shoestring.storage.objects import (
    MAX_PARTS,
    ObjectInfo,
    ObjectMeta,
    RangeRequest,
    WriteCondition,
)
from shoestring.storage.s3api import xml
from shoestring.storage.s3api.errors import S3Error, not_implemented
from shoestring.storage.s3api.reply import (
    Reply,
    checksum_headers,
    http_date,
    object_headers,
    xml_reply,
)
from shoestring.storage.s3api.request import S3Request

if TYPE_CHECKING:
    from shoestring.storage.s3api.app import S3Api

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def bucket_of(api: S3Api, request: S3Request) -> Bucket:
    assert request.bucket is not None
    return Bucket(api.storage, request.bucket)


def key_of(request: S3Request) -> str:
    assert request.key is not None
    return request.key


def meta_from_headers(headers: Mapping[str, str], key: str) -> ObjectMeta:
    from shoestring.storage.bucket import guess_type

    return ObjectMeta(
        content_type=headers.get("content-type") or guess_type(key),
        metadata={
            name.removeprefix("x-amz-meta-"): value
            for name, value in headers.items()
            if name.startswith("x-amz-meta-")
        },
        cache_control=headers.get("cache-control"),
        content_disposition=headers.get("content-disposition"),
        content_encoding=_content_encoding(headers.get("content-encoding")),
        content_language=headers.get("content-language"),
        expires=headers.get("expires"),
    )


# Headers of a write that promise what shoestring does not keep: the write is
# refused (501, naming the header) rather than stored without it.
UNKEPT = (
    "x-amz-server-side-encryption-customer-algorithm", "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold", "x-amz-tagging",
    "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
    "x-amz-website-redirect-location",
)  # fmt: skip
# Canned object ACLs that say nothing beyond what a one-owner store already does.
KEPT_ACLS = ("private", "bucket-owner-full-control", "bucket-owner-read")


def refuse_unkept(headers: Mapping[str, str]) -> None:
    """NotImplemented if the write asks for encryption, locks, tags or ACLs that would be lost."""
    for name in UNKEPT:
        if name in headers:
            raise not_implemented(f"the {name} header")
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in KEPT_ACLS:
        raise not_implemented(
            f"the x-amz-acl header of an object ({acl}; a bucket's access is set on the bucket)"
        )
    encryption = headers.get("x-amz-server-side-encryption")
    if encryption is not None and encryption != "AES256":  # what every object gets on S3
        raise not_implemented(f"the x-amz-server-side-encryption header ({encryption})")


def write_condition(headers: Mapping[str, str]) -> WriteCondition | None:
    """The conditional write a PutObject, CopyObject or CompleteMultipartUpload asks for.

    As S3: If-None-Match takes only `*` (NotImplemented otherwise), If-Match an ETag.
    """
    if_none, if_match = headers.get("if-none-match"), headers.get("if-match")
    if if_none is None and if_match is None:
        return None
    if if_none is not None and if_none.strip() != "*":
        raise S3Error(
            "NotImplemented", "a conditional write takes If-None-Match: * only (no ETags)"
        )
    if if_match is not None and not if_match.strip():
        raise S3Error("InvalidArgument", "If-Match must name an ETag")
    return WriteCondition(
        if_none_match=if_none is not None, if_match=if_match.strip() if if_match else None
    )


def _content_encoding(value: str | None) -> str | None:
    # aws-chunked is the upload's framing, not the object's encoding.
    if value is None:
        return None
    kept = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "aws-chunked"]
    return ",".join(kept) or None


def parse_range(header: str | None) -> RangeRequest | None:
    """A single `bytes=` range; anything else is ignored, as RFC 9110 allows."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    first = int(match[1]) if match[1] else None
    last = int(match[2]) if match[2] else None
    if first is not None and last is not None and last < first:
        return None
    return RangeRequest(first, last)


def _http_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _etag_matches(header: str, etag: str) -> bool:
    return any(tag.strip() in ("*", etag, etag.strip('"')) for tag in header.split(","))


def check_conditions(headers: Mapping[str, str], info: ObjectInfo, *, prefix: str = "") -> int:
    """0 if the request's conditions hold, else 304 or 412 (RFC 9110 §13.2.2 order)."""
    if_match = headers.get(prefix + "if-match")
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            return 412
    else:
        since = _http_time(headers.get(prefix + "if-unmodified-since"))
        if since is not None and info.last_modified > since:
            return 412
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None:
        if _etag_matches(if_none, info.etag):
            return 304
    else:
        modified = _http_time(headers.get(prefix + "if-modified-since"))
        if modified is not None and info.last_modified <= modified:
            return 304
    return 0


# Buckets are unversioned: each object is its one version, `null`.
NULL_VERSION = "null"


def _other_version(request: S3Request) -> bool:
    return request.query.get("versionId", NULL_VERSION) != NULL_VERSION


async def GetObject(api: S3Api, request: S3Request) -> Reply:
    if _other_version(request):
        raise S3Error("NoSuchVersion", "the specified version does not exist")
    overrides = [(q, h) for q, h in RESPONSE_OVERRIDES.items() if q in request.query]
    if overrides and request.caller.key is None:
        # As S3: otherwise anyone could have a public upload served as HTML on our origin.
        raise S3Error(
            "InvalidRequest",
            "Request specific response headers cannot be used for anonymous GET requests.",
        )
    byte_range = parse_range(request.headers.get("range"))
    part, parts_count = request.query.get("partNumber"), None
    if part is not None:
        byte_range, parts_count = await _part_range(api, request, part, byte_range)
    stored = await bucket_of(api, request).get(key_of(request), range=byte_range)
    info = stored.info
    failed = check_conditions(request.headers, info)
    if failed:
        await stored.body.close()
        if failed == 412:
            raise S3Error("PreconditionFailed", "at least one of the preconditions did not hold")
        reply = Reply(304)
        reply.header("etag", info.etag).header("last-modified", http_date(info))
        return reply
    reply = object_headers(info)
    reply.stream = stored.body
    if parts_count is not None:
        reply.header("x-amz-mp-parts-count", str(parts_count))
    if stored.range is not None:
        reply.status = 206
        reply.header("content-range", f"bytes {stored.range.start}-{stored.range.end}/{info.size}")
        reply.length = stored.range.length
    else:
        reply.length = info.size
        if request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            checksum_headers(reply, info.checksum)
    if overrides:
        names = {h.encode() for _, h in overrides}
        reply.headers = [(n, v) for n, v in reply.headers if n not in names]
        for query_name, header in overrides:
            reply.header(header, request.query[query_name])
    return reply


async def _part_range(
    api: S3Api, request: S3Request, part: str, byte_range: RangeRequest | None
) -> tuple[RangeRequest | None, int | None]:
    """GET ?partNumber=N: the bytes of part N and how many parts the object has.

    An object uploaded in one piece is its own part 1 (as in S3). Where the
    backend does not know a multipart object's part sizes, asking for a part
    is refused rather than answered with the whole object (which a client
    fetching part by part would write once per part).
    """
    if not part.isdigit() or not 1 <= int(part) <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber must be an integer from 1 to {MAX_PARTS}")
    if byte_range is not None:
        raise S3Error(
            "InvalidRequest", "Cannot specify both Range header and partNumber query parameter"
        )
    info = await bucket_of(api, request).head(key_of(request))
    number = int(part)
    if info.parts is not None:
        if number > len(info.parts):
            raise S3Error("InvalidPartNumber", "the requested partnumber is not satisfiable")
        start = sum(info.parts[: number - 1])
        return RangeRequest(start, start + info.parts[number - 1] - 1), len(info.parts)
    if "-" in info.etag:
        raise not_implemented("GetObject of one part of a multipart object (partNumber)")
    if number != 1:
        raise S3Error("InvalidPartNumber", "the requested partnumber is not satisfiable")
    return (RangeRequest(0, None) if info.size else None), None


async def HeadObject(api: S3Api, request: S3Request) -> Reply:
    # The same answer as GET without the body, ranges and conditions included.
    return await GetObject(api, request)


async def PutObject(api: S3Api, request: S3Request) -> Reply:
    key = key_of(request)
    refuse_unkept(request.headers)
    _check_length(api, request)
    expected = Expected.from_headers(request.headers)
    condition = write_condition(request.headers)
    info = await bucket_of(api, request).put_meta(
        key, request.chunked_body(api.storage.settings.max_object_size),
        meta_from_headers(request.headers, key), expected=expected, condition=condition,
    )  # fmt: skip
    return checksum_headers(Reply().header("etag", info.etag), info.checksum)


def _check_length(api: S3Api, request: S3Request) -> None:
    declared = request.headers.get("x-amz-decoded-content-length") or request.headers.get(
        "content-length"
    )
    if declared is not None:
        if not declared.isdigit():
            raise S3Error("InvalidArgument", "Content-Length must be a number")
        if int(declared) > api.storage.settings.max_object_size:
            raise S3Error(
                "EntityTooLarge", "your proposed upload exceeds the maximum allowed object size"
            )


async def DeleteObject(api: S3Api, request: S3Request) -> Reply:
    bucket, key = bucket_of(api, request), key_of(request)
    if not _other_version(request):  # a version that never existed: nothing to delete
        await bucket.delete(key)
    return Reply(204)


async def DeleteObjects(api: S3Api, request: S3Request) -> Reply:
    body = await request.read_xml()
    md5 = request.headers.get("content-md5")
    if md5 is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:  # noqa: S324
        raise S3Error("BadDigest", "the Content-MD5 you specified did not match what we received")
    objects, quiet = xml.parse_delete(body)
    bucket = bucket_of(api, request)
    results = []
    for key, version in objects:
        try:
            if version in (None, NULL_VERSION):  # else: a version that never existed
                await bucket.delete(key)
        except StorageError as exc:
            error = S3Error.from_storage(exc)
            results.append(
                xml.node(
                    "Error",
                    xml.text("Key", key),
                    xml.text("Code", error.code),
                    xml.text("Message", error.message),
                )
            )
            continue
        if not quiet:
            deleted = [xml.text("Key", key)]
            if version is not None:
                deleted.append(xml.text("VersionId", version))
            results.append(xml.node("Deleted", *deleted))
    return xml_reply(xml.document("DeleteResult", results))


def copy_source(request: S3Request) -> tuple[str, str]:
    """The bucket and key named by x-amz-copy-source, checked for the caller's read access."""
    path, _, query = request.headers["x-amz-copy-source"].partition("?")
    version = parse_qs(query).get("versionId", [NULL_VERSION])[0]
    source = unquote(path).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source must be BUCKET/KEY")
    check_bucket_name(bucket)
    check_key(key)
    caller = request.caller.key
    if caller is None or not caller.allows(bucket, write=False):
        raise S3Error("AccessDenied", "Access Denied")
    if version != NULL_VERSION:  # as GetObject: each object is its one `null` version
        raise S3Error("NoSuchVersion", "the specified version does not exist")
    return bucket, key


async def copy_source_info(
    api: S3Api, request: S3Request, source_bucket: str, source_key: str
) -> ObjectInfo:
    """The copy source's info, once its x-amz-copy-source-if-* conditions hold (else 412)."""
    info = await Bucket(api.storage, source_bucket).head(source_key)
    if check_conditions(request.headers, info, prefix="x-amz-copy-source-"):
        raise S3Error("PreconditionFailed", "at least one of the preconditions did not hold")
    return info


async def CopyObject(api: S3Api, request: S3Request) -> Reply:
    source_bucket, source_key = copy_source(request)
    refuse_unkept(request.headers)
    await request.discard_body()
    directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "x-amz-metadata-directive must be COPY or REPLACE")
    key = key_of(request)
    algorithm = request.headers.get("x-amz-checksum-algorithm")
    if (
        (source_bucket, source_key) == (request.bucket, key)
        and directive == "COPY"
        and not algorithm
    ):
        raise S3Error(
            "InvalidRequest",
            "this copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata",
        )
    condition = write_condition(request.headers)  # about the destination, as in S3
    await copy_source_info(api, request, source_bucket, source_key)
    meta = meta_from_headers(request.headers, key) if directive == "REPLACE" else None
    info = await bucket_of(api, request).copy(
        source_key, key, source_bucket=source_bucket, meta=meta, checksum_algorithm=algorithm,
        condition=condition,
    )  # fmt: skip
    return xml_reply(
        xml.document(
            "CopyObjectResult",
            xml.text("LastModified", info.last_modified),
            xml.text("ETag", info.etag),
            xml.checksum_nodes(info.checksum),
        )
    )


HANDLERS = {
    name: globals()[name]
    for name in (
        "GetObject", "HeadObject", "PutObject", "DeleteObject", "DeleteObjects", "CopyObject",
    )
}  # fmt: skip
