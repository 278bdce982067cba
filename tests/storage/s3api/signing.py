"""Hand-signed requests, for what boto3 will not send: bad XML, skewed clocks, signed chunks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from shoestring.storage.credentials import NewKey
from shoestring.storage.s3api import sigv4


def signed_request(
    method: str,
    url: str,
    key: NewKey,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    now: datetime | None = None,
    payload_hash: str | None = None,
    secret: str | None = None,
) -> httpx.Response:
    parts = urlsplit(url)
    now = now or datetime.now(UTC)
    timestamp = now.strftime(sigv4.DATE_FORMAT)
    credential = sigv4.Credential(key.key.access_key_id, timestamp[:8], "us-east-1", "s3")
    all_headers = {
        "host": parts.netloc,
        "x-amz-date": timestamp,
        "x-amz-content-sha256": payload_hash or hashlib.sha256(body).hexdigest(),
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    signed = sorted(all_headers)
    query = httpx.QueryParams(parts.query)
    canonical = sigv4.canonical_request(
        method, parts.path, list(query.multi_items()), all_headers, signed,
        all_headers["x-amz-content-sha256"],
    )  # fmt: skip
    signing_key = sigv4.signing_key(secret or key.secret_access_key, credential)
    signature = sigv4.sign(signing_key, sigv4.string_to_sign(timestamp, credential, canonical))
    all_headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key.key.access_key_id}/{credential.scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return httpx.request(method, url, content=body, headers=all_headers)


def signed_chunks(
    key: NewKey, timestamp: str, seed: str, chunks: list[bytes], *, tamper: bool = False
) -> bytes:
    """An aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) chained from `seed`."""
    credential = sigv4.Credential(key.key.access_key_id, timestamp[:8], "us-east-1", "s3")
    signing_key = sigv4.signing_key(key.secret_access_key, credential)
    out = b""
    previous = seed
    for chunk in [*chunks, b""]:
        text = sigv4.chunk_string_to_sign(
            timestamp, credential, previous, hashlib.sha256(chunk).hexdigest()
        )
        previous = sigv4.sign(signing_key, text)
        sent = chunk.replace(b"a", b"b") if tamper and chunk else chunk
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return out


def unsigned_trailer_put(
    url: str, key: NewKey, data: bytes, trailer: str, value: str | None
) -> httpx.Response:
    """A PUT framed as boto3 frames it over TLS: plain aws-chunked data, then a checksum
    trailer `trailer: value` (announced in x-amz-trailer but left out when `value` is None)."""
    framed = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n"
    if value is not None:
        framed += f"{trailer}:{value}\r\n".encode()
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": trailer,
    }
    return signed_request(
        "PUT", url, key, framed + b"\r\n", headers=headers,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )  # fmt: skip
