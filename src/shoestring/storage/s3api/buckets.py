"""Bucket operations of the S3 API: create, delete, head, list, location, CORS, ACL, versioning.

Buckets are unversioned: ListObjectVersions lists each object as its single
`null` version, PutBucketVersioning accepts Suspended (which is how they
behave) and refuses Enabled, and GetBucketVersioning reports which was set.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from shoestring.storage.bucket import Bucket
from shoestring.storage.objects import CorsRule, ObjectInfo
from shoestring.storage.s3api import listing, xml
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.reply import Reply, xml_reply
from shoestring.storage.s3api.request import S3Request

if TYPE_CHECKING:
    from shoestring.storage.s3api.app import S3Api

OWNER = xml.node("Owner", xml.text("ID", "shoestring"), xml.text("DisplayName", "shoestring"))


def bucket_of(api: S3Api, request: S3Request) -> Bucket:
    assert request.bucket is not None
    return Bucket(api.storage, request.bucket)


async def ListBuckets(api: S3Api, request: S3Request) -> Reply:
    key = request.caller.key
    assert key is not None
    visible = [b for b in await api.storage.list_buckets() if key.allows(b.name, write=False)]
    entries = [
        xml.node("Bucket", xml.text("Name", b.name), xml.text("CreationDate", b.created))
        for b in visible
    ]
    return xml_reply(xml.document("ListAllMyBucketsResult", OWNER, xml.node("Buckets", entries)))


async def CreateBucket(api: S3Api, request: S3Request) -> Reply:
    body = await request.read_xml()
    if body.strip():
        xml.parse(body, "CreateBucketConfiguration")  # the region in it is accepted as-is
    acl = request.headers.get("x-amz-acl", "private")
    if acl not in ("private", "public-read"):
        raise S3Error("InvalidArgument", "x-amz-acl must be private or public-read")
    await bucket_of(api, request).create(public=acl == "public-read")
    api.forget_config(request.bucket or "")
    return Reply().header("location", f"/{request.bucket}")


async def DeleteBucket(api: S3Api, request: S3Request) -> Reply:
    await bucket_of(api, request).delete_bucket()
    api.forget_config(request.bucket or "")
    return Reply(204)


async def HeadBucket(api: S3Api, request: S3Request) -> Reply:
    await bucket_of(api, request).config()
    return Reply().header("x-amz-bucket-region", api.storage.settings.region)


async def GetBucketLocation(api: S3Api, request: S3Request) -> Reply:
    await bucket_of(api, request).config()
    region = api.storage.settings.region
    # S3 answers an empty constraint for us-east-1, and clients expect exactly that.
    body = xml.HEADER + (
        f'<LocationConstraint xmlns="{xml.NAMESPACE}">'
        f"{'' if region == 'us-east-1' else region}</LocationConstraint>"
    )
    return xml_reply(body.encode())


async def GetBucketVersioning(api: S3Api, request: S3Request) -> Reply:
    config = await bucket_of(api, request).config()
    status = xml.text("Status", "Suspended") if config.versioning_suspended else ""
    return xml_reply(xml.document("VersioningConfiguration", status))


async def PutBucketVersioning(api: S3Api, request: S3Request) -> Reply:
    # Suspended is what an unversioned bucket already does (every write replaces
    # the `null` version), so it is accepted; Enabled would promise old versions
    # that are never kept, so it is refused rather than pretended.
    status, mfa_delete = xml.parse_versioning(await request.read_xml())
    if status == "Enabled":
        raise S3Error(
            "NotImplemented",
            "shoestring buckets are unversioned: each object is its single null version, "
            "so versioning cannot be Enabled (Suspended is accepted)",
        )
    if mfa_delete == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not implemented by shoestring's S3 API")
    await bucket_of(api, request).suspend_versioning()
    return Reply()


async def GetBucketAcl(api: S3Api, request: S3Request) -> Reply:
    config = await bucket_of(api, request).config()
    grants = [
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:type="CanonicalUser"><ID>shoestring</ID></Grantee>'
        "<Permission>FULL_CONTROL</Permission></Grant>"
    ]
    if config.access == "public-read":
        grants.append(
            '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>'
            "</Grantee><Permission>READ</Permission></Grant>"
        )
    return xml_reply(
        xml.document("AccessControlPolicy", OWNER, xml.node("AccessControlList", grants))
    )


async def PutBucketAcl(api: S3Api, request: S3Request) -> Reply:
    acl = request.headers.get("x-amz-acl")
    if acl not in ("private", "public-read"):
        raise S3Error(
            "InvalidArgument", "set the bucket ACL with x-amz-acl: private or public-read"
        )
    await request.discard_body()
    await bucket_of(api, request).set_access("public-read" if acl == "public-read" else "private")
    api.forget_config(request.bucket or "")
    return Reply()


async def GetBucketCors(api: S3Api, request: S3Request) -> Reply:
    config = await bucket_of(api, request).config()
    if not config.cors:
        raise S3Error("NoSuchCORSConfiguration", "the CORS configuration does not exist")
    rules = [
        xml.node(
            "CORSRule",
            xml.text("ID", rule.id),
            [xml.text("AllowedOrigin", o) for o in rule.allowed_origins],
            [xml.text("AllowedMethod", m) for m in rule.allowed_methods],
            [xml.text("AllowedHeader", h) for h in rule.allowed_headers],
            [xml.text("ExposeHeader", h) for h in rule.expose_headers],
            xml.text("MaxAgeSeconds", rule.max_age_seconds),
        )
        for rule in config.cors
    ]
    return xml_reply(xml.document("CORSConfiguration", rules))


async def PutBucketCors(api: S3Api, request: S3Request) -> Reply:
    parsed = xml.parse_cors(await request.read_xml())
    rules = [
        CorsRule(
            id=r["id"],
            allowed_origins=tuple(r["origins"]),
            allowed_methods=tuple(r["methods"]),
            allowed_headers=tuple(r["headers"]),
            expose_headers=tuple(r["expose"]),
            max_age_seconds=r["max_age"],
        )
        for r in parsed
    ]
    await bucket_of(api, request).set_cors(rules)
    api.forget_config(request.bucket or "")
    return Reply()


async def DeleteBucketCors(api: S3Api, request: S3Request) -> Reply:
    await bucket_of(api, request).set_cors([])
    api.forget_config(request.bucket or "")
    return Reply(204)


# -- listings ---------------------------------------------------------------


def _contents(info: ObjectInfo, url: bool, *, owner: bool = False) -> str:
    return xml.node(
        "Contents",
        xml.text("Key", listing.encode(info.key, url)),
        xml.text("LastModified", info.last_modified),
        xml.text("ETag", info.etag),
        *_checksum_kind(info),
        xml.text("Size", info.size),
        xml.text("StorageClass", "STANDARD"),
        OWNER if owner else "",
    )


def _checksum_kind(info: ObjectInfo) -> list[str]:
    """Which checksum an object has, as listings tell it (the value takes a HEAD)."""
    if info.checksum is None:
        return []
    return [
        xml.text("ChecksumAlgorithm", info.checksum.algorithm.upper()),
        xml.text("ChecksumType", info.checksum.type),
    ]


async def ListObjects(api: S3Api, request: S3Request) -> Reply:
    q = request.query
    url, encoding = listing.encoding(request)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    max_keys = listing.page_size(request, "max-keys")
    page = await bucket_of(api, request).list_page(
        prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    return xml_reply(
        xml.document(
            "ListBucketResult",
            xml.text("Name", request.bucket),
            xml.text("Prefix", listing.encode(prefix, url)),
            xml.text("Marker", listing.encode(marker, url)),
            xml.text("MaxKeys", max_keys),
            xml.text("Delimiter", listing.encode(delimiter, url)) if delimiter else "",
            xml.text("EncodingType", encoding) if encoding else "",
            xml.text("IsTruncated", page.truncated),
            xml.text("NextMarker", listing.encode(page.next_marker, url))
            if page.truncated and page.next_marker and delimiter
            else "",
            [_contents(o, url, owner=True) for o in page.objects],
            listing.common_prefixes(page.prefixes, url),
        )
    )


# A continuation token is the marker behind this prefix, so that a token this
# API did not hand out is refused rather than taken as a place to start.
_TOKEN_PREFIX = b"1:"


def _token(marker: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + marker.encode("utf-8")).decode("ascii")


def _untoken(token: str) -> str:
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError(token)
        return raw[len(_TOKEN_PREFIX) :].decode("utf-8")
    except (ValueError, UnicodeError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def ListObjectsV2(api: S3Api, request: S3Request) -> Reply:
    q = request.query
    url, encoding = listing.encoding(request)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    token = q.get("continuation-token")
    start_after = q.get("start-after", "")
    after = _untoken(token) if token else start_after
    max_keys = listing.page_size(request, "max-keys")
    page = await bucket_of(api, request).list_page(
        prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
    )
    owner = q.get("fetch-owner") == "true"
    return xml_reply(
        xml.document(
            "ListBucketResult",
            xml.text("Name", request.bucket),
            xml.text("Prefix", listing.encode(prefix, url)),
            xml.text("Delimiter", listing.encode(delimiter, url)) if delimiter else "",
            xml.text("MaxKeys", max_keys),
            xml.text("EncodingType", encoding) if encoding else "",
            xml.text("KeyCount", len(page.objects) + len(page.prefixes)),
            xml.text("IsTruncated", page.truncated),
            xml.text("ContinuationToken", token) if token else "",
            xml.text("NextContinuationToken", _token(page.next_marker))
            if page.truncated and page.next_marker
            else "",
            xml.text("StartAfter", listing.encode(start_after, url)) if start_after else "",
            [_contents(o, url, owner=owner) for o in page.objects],
            listing.common_prefixes(page.prefixes, url),
        )
    )


async def ListObjectVersions(api: S3Api, request: S3Request) -> Reply:
    q = request.query
    url, encoding = listing.encoding(request)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("key-marker", "")
    max_keys = listing.page_size(request, "max-keys")
    page = await bucket_of(api, request).list_page(
        prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    versions = [
        xml.node(
            "Version",
            xml.text("Key", listing.encode(o.key, url)),
            xml.text("VersionId", "null"),
            xml.text("IsLatest", True),
            xml.text("LastModified", o.last_modified),
            xml.text("ETag", o.etag),
            *_checksum_kind(o),
            xml.text("Size", o.size),
            xml.text("StorageClass", "STANDARD"),
            OWNER,
        )
        for o in page.objects
    ]
    return xml_reply(
        xml.document(
            "ListVersionsResult",
            xml.text("Name", request.bucket),
            xml.text("Prefix", listing.encode(prefix, url)),
            xml.text("KeyMarker", listing.encode(marker, url)),
            xml.text("VersionIdMarker", ""),
            xml.text("MaxKeys", max_keys),
            xml.text("Delimiter", listing.encode(delimiter, url)) if delimiter else "",
            xml.text("EncodingType", encoding) if encoding else "",
            xml.text("IsTruncated", page.truncated),
            xml.text("NextKeyMarker", listing.encode(page.next_marker, url))
            if page.truncated and page.next_marker
            else "",
            xml.text("NextVersionIdMarker", "null") if page.truncated else "",
            versions,
            listing.common_prefixes(page.prefixes, url),
        )
    )


HANDLERS = {
    name: globals()[name]
    for name in (
        "ListBuckets", "CreateBucket", "DeleteBucket", "HeadBucket", "GetBucketLocation",
        "GetBucketVersioning", "PutBucketVersioning", "GetBucketAcl", "PutBucketAcl",
        "GetBucketCors", "PutBucketCors", "DeleteBucketCors", "ListObjects", "ListObjectsV2",
        "ListObjectVersions",
    )
}  # fmt: skip
