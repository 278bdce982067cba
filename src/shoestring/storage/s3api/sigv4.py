"""AWS Signature Version 4, as S3 uses it: header auth, presigned URLs, signed chunks.

https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html

Pure functions over already-parsed request parts, so they are property-
testable and shared by the server (verify) and `Bucket.presign_*` (sign).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# What S3 takes in x-amz-content-sha256 besides a SHA-256 in hex (the ECDSA ones it
# names too, and request.py refuses: SigV4a is not implemented).
PAYLOAD_MODES = (
    UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER,
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
)  # fmt: skip
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """Why a request's signature was refused; `code` is the S3 error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Credential:
    """`AKID/20250101/us-east-1/s3/aws4_request`, split."""

    access_key_id: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @classmethod
    def parse(cls, text: str) -> Credential:
        parts = text.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
            raise SignatureError(
                "AuthorizationHeaderMalformed",
                "the Credential must be KEY/DATE/REGION/s3/aws4_request",
            )
        return cls(parts[0], parts[1], parts[2], parts[3])


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a request claims about its signature, before the secret is known."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # x-amz-date / X-Amz-Date
    payload_hash: str  # x-amz-content-sha256, or UNSIGNED-PAYLOAD for presigned URLs
    presigned: bool
    expires: int = 0


def uri_encode(text: str, *, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def canonical_query(pairs: Iterable[tuple[str, str]], *, skip: str | None = None) -> str:
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs if name != skip)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_request(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    skip_query: str | None = None,
) -> str:
    # S3 signs the path as sent (already URI-encoded once), unlike other services.
    lines = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    return "\n".join(
        [
            method,
            raw_path or "/",
            canonical_query(query, skip=skip_query),
            lines,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signing_key(secret: str, credential: Credential) -> bytes:
    key = _hmac(("AWS4" + secret).encode("utf-8"), credential.date)
    for part in (credential.region, credential.service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def string_to_sign(timestamp: str, credential: Credential, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{credential.scope}\n{digest}"


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_authorization(header: str, headers: Mapping[str, str]) -> SignedRequest:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""
    match = _AUTH_HEADER.match(header.strip())
    if match is None:
        raise SignatureError(
            "AuthorizationHeaderMalformed",
            "the authorization header is not a valid AWS4-HMAC-SHA256 one",
        )
    timestamp = headers.get("x-amz-date") or ""
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise SignatureError("InvalidRequest", "missing required header x-amz-content-sha256")
    signed = tuple(match["headers"].split(";"))
    if "host" not in signed:
        raise SignatureError("AuthorizationHeaderMalformed", "the host header must be signed")
    return SignedRequest(
        Credential.parse(match["credential"]), signed, match["signature"], timestamp, payload_hash,
        presigned=False,
    )  # fmt: skip


def parse_presigned(query: Mapping[str, str]) -> SignedRequest:
    """The parts of a presigned URL's `X-Amz-*` query parameters."""
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError(
            "AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256"
        )
    try:
        expires = int(query["X-Amz-Expires"])
        credential = Credential.parse(query["X-Amz-Credential"])
        signed = tuple(query["X-Amz-SignedHeaders"].split(";"))
        signature = query["X-Amz-Signature"]
        timestamp = query["X-Amz-Date"]
    except (KeyError, ValueError):
        raise SignatureError(
            "AuthorizationQueryParametersError",
            "a presigned URL needs X-Amz-Credential, -Date, -Expires, -SignedHeaders and -Signature",
        ) from None
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise SignatureError(
            "AuthorizationQueryParametersError", "X-Amz-Expires must be 1 to 604800 seconds"
        )
    return SignedRequest(
        credential, signed, signature, timestamp, UNSIGNED_PAYLOAD, presigned=True, expires=expires
    )


def check_payload_hash(value: str) -> None:
    """InvalidArgument unless `value` is one x-amz-content-sha256 may be, as S3 answers."""
    if value not in PAYLOAD_MODES and _SHA256_HEX.fullmatch(value) is None:
        raise SignatureError(
            "InvalidArgument",
            f"x-amz-content-sha256 must be {', '.join(PAYLOAD_MODES)} or a valid sha256 value.",
        )


def check_service(signed: SignedRequest) -> None:
    """Refuse a signature made for another service than S3.

    Any region is taken, as MinIO does unless told its own: the signature
    covers the region the client named, so it proves the same either way, and
    a client whose default region is not us-east-1 works the first time.
    """
    if signed.credential.service != "s3":
        raise SignatureError(
            "AuthorizationQueryParametersError"
            if signed.presigned
            else "AuthorizationHeaderMalformed",
            f"the authorization is malformed; the service '{signed.credential.service}' is wrong; "
            "expecting 's3'",
        )


def parse_timestamp(timestamp: str) -> datetime:
    try:
        return datetime.strptime(timestamp, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "AccessDenied", "the request's X-Amz-Date is missing or malformed"
        ) from None


def check_time(signed: SignedRequest, now: datetime, skew: int) -> None:
    """Refuse requests from too far in the past or future, and expired presigned URLs."""
    when = parse_timestamp(signed.timestamp)
    if signed.credential.date != signed.timestamp[:8]:
        raise SignatureError("SignatureDoesNotMatch", "the credential's date is not the request's")
    if signed.presigned:
        if now > when + timedelta(seconds=signed.expires):
            raise SignatureError("AccessDenied", "Request has expired")
        if when - now > timedelta(seconds=skew):
            raise SignatureError("AccessDenied", "the presigned URL is not valid yet")
        return
    if abs(now - when) > timedelta(seconds=skew):
        raise SignatureError(
            "RequestTimeTooSkewed",
            "the difference between the request time and the server's time is too large",
        )


def chunk_string_to_sign(
    timestamp: str, credential: Credential, previous: str, chunk_hash: str
) -> str:
    return (
        f"AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{credential.scope}\n{previous}\n"
        f"{EMPTY_SHA256}\n{chunk_hash}"
    )


def trailer_string_to_sign(
    timestamp: str, credential: Credential, previous: str, trailer_hash: str
) -> str:
    return f"AWS4-HMAC-SHA256-TRAILER\n{timestamp}\n{credential.scope}\n{previous}\n{trailer_hash}"


def presign_url(
    *,
    method: str,
    url: str,
    access_key_id: str,
    secret: str,
    region: str,
    expires: int,
    now: datetime,
) -> str:
    """`url` with a SigV4 query signature allowing `method` for `expires` seconds."""
    parts = urlsplit(url)
    timestamp = now.strftime(DATE_FORMAT)
    credential = Credential(access_key_id, timestamp[:8], region, "s3")
    query = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key_id}/{credential.scope}"),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    canonical = canonical_request(
        method, parts.path, query, {"host": parts.netloc}, ["host"], UNSIGNED_PAYLOAD
    )
    signature = sign(
        signing_key(secret, credential), string_to_sign(timestamp, credential, canonical)
    )
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{canonical_query(query)}&X-Amz-Signature={signature}"
