"""Multipart uploads over the S3 API: create, upload (or copy) parts, complete, abort, list.

CreateMultipartUpload may name a checksum algorithm (x-amz-checksum-algorithm)
and type; every part is then checksummed with it, CompleteMultipartUpload
must list each part's checksum, and the object gets one (checksums.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shoestring.storage.bucket import Bucket
from shoestring.storage.checksums import checksum_type
from shoestring.storage.digests import (
    Expected,
    check_checksum_value,
    check_single,
    request_checksums,
)
from shoestring.storage.errors import InvalidChecksum
from shoestring.storage.objects import MAX_PARTS, Checksum, RangeRequest
from shoestring.storage.s3api import listing, xml
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.objects import (
    _check_length,
    copy_source,
    copy_source_info,
    key_of,
    meta_from_headers,
    refuse_unkept,
    write_condition,
)
from shoestring.storage.s3api.reply import Reply, checksum_headers, xml_reply
from shoestring.storage.s3api.request import S3Request

if TYPE_CHECKING:
    from shoestring.storage.s3api.app import S3Api


def bucket_of(api: S3Api, request: S3Request) -> Bucket:
    assert request.bucket is not None
    return Bucket(api.storage, request.bucket)


def _part_number(request: S3Request) -> int:
    text = request.query.get("partNumber", "")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber must be an integer from 1 to {MAX_PARTS}")
    return int(text)


async def CreateMultipartUpload(api: S3Api, request: S3Request) -> Reply:
    key = key_of(request)
    refuse_unkept(request.headers)
    await request.discard_body()
    upload = await bucket_of(api, request).create_upload(
        key, meta_from_headers(request.headers, key),
        checksum_algorithm=request.headers.get("x-amz-checksum-algorithm"),
        checksum_type=request.headers.get("x-amz-checksum-type"),
    )  # fmt: skip
    reply = xml_reply(
        xml.document(
            "InitiateMultipartUploadResult",
            xml.text("Bucket", request.bucket),
            xml.text("Key", key),
            xml.text("UploadId", upload.upload_id),
        )
    )
    if upload.checksum_algorithm and upload.checksum_type:
        reply.header("x-amz-checksum-algorithm", upload.checksum_algorithm.upper())
        reply.header("x-amz-checksum-type", upload.checksum_type)
    return reply


async def UploadPart(api: S3Api, request: S3Request) -> Reply:
    number = _part_number(request)
    _check_length(api, request)
    expected = Expected.from_headers(request.headers)
    part = await bucket_of(api, request).upload_part(
        key_of(request), request.query["uploadId"], number,
        request.chunked_body(api.storage.settings.max_object_size), expected,
    )  # fmt: skip
    return checksum_headers(Reply().header("etag", part.etag), part.checksum, with_type=False)


_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


async def UploadPartCopy(api: S3Api, request: S3Request) -> Reply:
    number = _part_number(request)
    source_bucket, source_key = copy_source(request)
    await request.discard_body()
    source = await copy_source_info(api, request, source_bucket, source_key)
    part = await bucket_of(api, request).upload_part_copy(
        key_of(request), request.query["uploadId"], number, source_bucket, source_key,
        _copy_range(request.headers.get("x-amz-copy-source-range"), source.size),
    )  # fmt: skip
    return xml_reply(
        xml.document(
            "CopyPartResult",
            xml.text("LastModified", part.last_modified),
            xml.text("ETag", part.etag),
            xml.checksum_nodes(part.checksum, with_type=False),
        )
    )


def _copy_range(header: str | None, size: int) -> RangeRequest | None:
    """x-amz-copy-source-range: unlike a GET's Range, exactly `bytes=FIRST-LAST` inside the source."""
    if header is None:
        return None
    match = _COPY_RANGE.fullmatch(header.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise S3Error(
            "InvalidArgument",
            "x-amz-copy-source-range must be bytes=FIRST-LAST, with FIRST <= LAST",
        )
    if int(match[2]) >= size:
        raise S3Error("InvalidRange", "the range specified is not valid for the source object")
    return RangeRequest(int(match[1]), int(match[2]))


async def CompleteMultipartUpload(api: S3Api, request: S3Request) -> Reply:
    condition = write_condition(request.headers)
    parts = xml.parse_complete(await request.read_xml())
    key = key_of(request)
    info = await bucket_of(api, request).complete_upload(
        key, request.query["uploadId"], parts, checksum=_object_checksum(request.headers),
        condition=condition,
    )  # fmt: skip
    return xml_reply(
        xml.document(
            "CompleteMultipartUploadResult",
            xml.text("Location", f"{api.storage.public_url()}/{request.bucket}/{key}"),
            xml.text("Bucket", request.bucket),
            xml.text("Key", key),
            xml.text("ETag", info.etag),
            xml.checksum_nodes(info.checksum),
        )
    )


def _object_checksum(headers: Mapping[str, str]) -> Checksum | None:
    """The object's checksum a CompleteMultipartUpload sends, to be checked against the one made.

    A COMPOSITE value may carry its `-N` suffix; without x-amz-checksum-type,
    the suffix says which type the client means.
    """
    named = request_checksums(headers)
    check_single(named)
    named_type = headers.get("x-amz-checksum-type")
    if named_type and checksum_type(named_type) is None:
        raise InvalidChecksum("x-amz-checksum-type must be FULL_OBJECT or COMPOSITE")
    for algorithm, value in named.items():
        digest, dash, count = value.partition("-")
        check_checksum_value(algorithm, digest)
        if dash and not count.isdigit():
            raise InvalidChecksum(f"Value for x-amz-checksum-{algorithm} header is invalid.")
        kind = checksum_type(named_type) or ("COMPOSITE" if dash else "FULL_OBJECT")
        return Checksum(algorithm, value, kind)
    return None


async def AbortMultipartUpload(api: S3Api, request: S3Request) -> Reply:
    await bucket_of(api, request).abort_upload(key_of(request), request.query["uploadId"])
    return Reply(204)


async def ListParts(api: S3Api, request: S3Request) -> Reply:
    key = key_of(request)
    upload_id = request.query["uploadId"]
    marker = listing.count(request, "part-number-marker", 0)
    limit = listing.page_size(request, "max-parts")
    parts = [
        p for p in await bucket_of(api, request).list_parts(key, upload_id) if p.number > marker
    ]
    # As a listing of max-keys=0: nothing asked, nothing truncated.
    page, truncated = parts[:limit], bool(limit) and len(parts) > limit
    return xml_reply(
        xml.document(
            "ListPartsResult",
            xml.text("Bucket", request.bucket),
            xml.text("Key", key),
            xml.text("UploadId", upload_id),
            xml.text("PartNumberMarker", marker),
            xml.text("NextPartNumberMarker", page[-1].number) if truncated else "",
            xml.text("MaxParts", limit),
            xml.text("IsTruncated", truncated),
            [
                xml.node(
                    "Part",
                    xml.text("PartNumber", p.number),
                    xml.text("LastModified", p.last_modified),
                    xml.text("ETag", p.etag),
                    xml.text("Size", p.size),
                    xml.checksum_nodes(p.checksum, with_type=False),
                )
                for p in page
            ],
        )
    )


async def ListMultipartUploads(api: S3Api, request: S3Request) -> Reply:
    q = request.query
    url, encoding = listing.encoding(request)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker = q.get("key-marker", "")
    # S3 ignores upload-id-marker without key-marker.
    upload_id_marker = q.get("upload-id-marker", "") if key_marker else ""
    max_uploads = listing.page_size(request, "max-uploads")
    page = await bucket_of(api, request).list_uploads_page(
        prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads,
    )  # fmt: skip
    return xml_reply(
        xml.document(
            "ListMultipartUploadsResult",
            xml.text("Bucket", request.bucket),
            xml.text("KeyMarker", listing.encode(key_marker, url)),
            xml.text("UploadIdMarker", upload_id_marker),
            xml.text("NextKeyMarker", listing.encode(page.next_key_marker, url))
            if page.truncated and page.next_key_marker is not None
            else "",
            xml.text("Prefix", listing.encode(prefix, url)),
            xml.text("Delimiter", listing.encode(delimiter, url)) if delimiter else "",
            xml.text("NextUploadIdMarker", page.next_upload_id_marker) if page.truncated else "",
            xml.text("MaxUploads", max_uploads),
            xml.text("IsTruncated", page.truncated),
            [
                xml.node(
                    "Upload",
                    xml.text("Key", listing.encode(u.key, url)),
                    xml.text("UploadId", u.upload_id),
                    xml.text("StorageClass", "STANDARD"),
                    xml.text("Initiated", u.initiated),
                    xml.text(
                        "ChecksumAlgorithm", u.checksum_algorithm and u.checksum_algorithm.upper()
                    ),
                    xml.text("ChecksumType", u.checksum_type),
                )
                for u in page.uploads
            ],
            listing.common_prefixes(page.prefixes, url),
            xml.text("EncodingType", encoding) if encoding else "",
        )
    )


HANDLERS = {
    name: globals()[name]
    for name in (
        "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
        "AbortMultipartUpload", "ListParts", "ListMultipartUploads",
    )
}  # fmt: skip
