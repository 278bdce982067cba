"""Who is calling, and may they: SigV4 verification and the access rules.

- A request signed with a known key (header or presigned query) acts with
  that key's scope: its buckets, read and/or write.
- An unsigned request may only GET or HEAD objects of a public-read bucket
  (and send CORS preflights, which carry no credentials by design).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from shoestring.storage.credentials import KeyStore, UnknownAccessKey
from shoestring.storage.s3api import sigv4
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.request import Caller, S3Request

# Operations an anonymous caller may perform on a public-read bucket.
ANONYMOUS_READS = frozenset({"GetObject", "HeadObject"})
READS = frozenset(
    {
        "GetObject", "HeadObject", "ListObjects", "ListObjectsV2", "ListObjectVersions",
        "HeadBucket", "GetBucketLocation", "GetBucketVersioning", "GetBucketCors",
        "ListParts", "ListMultipartUploads", "ListBuckets", "GetBucketAcl",
    }
)  # fmt: skip


async def authenticate(request: S3Request, keys: KeyStore, skew: int) -> Caller:
    """The verified caller of `request`; S3Error if a signature is present but wrong."""
    payload_hash = request.headers.get("x-amz-content-sha256")
    if payload_hash is not None:
        sigv4.check_payload_hash(payload_hash)
    header = request.headers.get("authorization")
    if header is not None:
        if not header.startswith(sigv4.ALGORITHM):
            raise S3Error(
                "InvalidRequest", "only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported"
            )
        signed = sigv4.parse_authorization(header, request.headers)
    elif "X-Amz-Signature" in request.query:
        signed = sigv4.parse_presigned(request.query)
    elif "AWSAccessKeyId" in request.query:
        raise S3Error(
            "InvalidRequest",
            "AWS Signature Version 2 is not supported: sign with Signature Version 4 "
            "(boto3: Config(signature_version='s3v4'))",
        )
    else:
        return Caller()
    sigv4.check_service(signed)
    sigv4.check_time(signed, datetime.now(UTC), skew)
    try:
        key, secret = await keys.lookup(signed.credential.access_key_id)
    except UnknownAccessKey as exc:
        raise S3Error(exc.code, str(exc)) from None
    canonical = sigv4.canonical_request(
        request.method,
        request.raw_path,
        request.query_pairs,
        request.headers,
        signed.signed_headers,
        signed.payload_hash,
        skip_query="X-Amz-Signature" if signed.presigned else None,
    )
    signing_key = sigv4.signing_key(secret, signed.credential)
    expected = sigv4.sign(
        signing_key, sigv4.string_to_sign(signed.timestamp, signed.credential, canonical)
    )
    if not hmac.compare_digest(expected, signed.signature):
        raise S3Error(
            "SignatureDoesNotMatch",
            "the request signature we calculated does not match the signature you provided; "
            "check your key and signing method",
        )
    return Caller(key=key, signed=signed, signing_key=signing_key, signature=signed.signature)


def authorize(request: S3Request, public: bool) -> None:
    """Raise AccessDenied unless the caller may perform `request.operation`."""
    caller = request.caller.key
    reading = request.operation in READS
    if caller is None:
        if public and request.operation in ANONYMOUS_READS:
            return
        raise S3Error("AccessDenied", "Access Denied")
    if not caller.allows(request.bucket, write=not reading):
        raise S3Error("AccessDenied", "Access Denied")
