"""An S3 API request as the handlers see it: bucket, key, query, headers, body, caller."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from starlette.types import Receive, Scope

from shoestring.storage.credentials import AccessKey
from shoestring.storage.s3api import sigv4
from shoestring.storage.s3api.chunked import ChunkedBody
from shoestring.storage.s3api.errors import S3Error

MAX_XML_BODY = 2 * 1024 * 1024  # DeleteObjects of 1000 long keys fits; nothing legitimate is bigger


@dataclass(slots=True)
class Caller:
    """Who signed the request (None: anonymous) and what the body's signature needs."""

    key: AccessKey | None = None
    signed: sigv4.SignedRequest | None = None
    signing_key: bytes | None = None
    signature: str = ""


@dataclass(slots=True)
class S3Request:
    scope: Scope
    receive: Receive
    method: str
    bucket: str | None
    key: str | None
    raw_path: str  # as sent, for the signature
    query: dict[str, str]
    query_pairs: list[tuple[str, str]]
    headers: dict[str, str]
    caller: Caller = field(default_factory=Caller)
    operation: str = ""
    _consumed: bool = False

    @classmethod
    def from_scope(
        cls, scope: Scope, receive: Receive, bucket: str | None, key: str | None, raw_path: str
    ) -> S3Request:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            decoded = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[decoded] = f"{headers[decoded]},{text}" if decoded in headers else text
        pairs = parse_qsl(scope["query_string"].decode("utf-8", "replace"), keep_blank_values=True)
        query: dict[str, str] = {}
        for name, value in pairs:
            query.setdefault(name, value)
        return cls(scope, receive, scope["method"], bucket, key, raw_path, query, pairs, headers)

    @property
    def resource(self) -> str:
        return "/" + "/".join(p for p in (self.bucket, self.key) if p)

    # -- the body ------------------------------------------------------------

    async def _raw(self) -> AsyncIterator[bytes]:
        if self._consumed:
            return
        self._consumed = True
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody", "the client disconnected before the body ended")
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    def body(self, max_size: int | None = None) -> AsyncIterator[bytes]:
        """The payload, decoded from aws-chunked if so framed, verified against its signature.

        `max_size`: an aws-chunked chunk that would take the payload past it is
        refused (EntityTooLarge) before it is read.
        """
        payload_hash = self.headers.get("x-amz-content-sha256", "")
        if payload_hash.startswith("STREAMING-"):
            return aiter(self._chunked(payload_hash, max_size))
        if len(payload_hash) == 64 and self.caller.signed is not None:
            return self._hashed(payload_hash)
        return self._raw()

    def _chunked(self, mode: str, max_size: int | None) -> ChunkedBody:
        if mode not in (
            sigv4.STREAMING_SIGNED,
            sigv4.STREAMING_SIGNED_TRAILER,
            sigv4.STREAMING_UNSIGNED_TRAILER,
        ):
            raise S3Error("InvalidArgument", f"unsupported x-amz-content-sha256 {mode!r}")
        decoded = self.headers.get("x-amz-decoded-content-length")
        signed = self.caller.signed
        return ChunkedBody(
            self._raw(),
            mode=mode,
            decoded_length=int(decoded) if decoded and decoded.isdigit() else None,
            max_size=max_size,
            key=self.caller.signing_key,
            credential=signed.credential if signed else None,
            timestamp=signed.timestamp if signed else "",
            seed_signature=self.caller.signature,
        )

    async def _hashed(self, expected: str) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        async for chunk in self._raw():
            digest.update(chunk)
            yield chunk
        if not hmac.compare_digest(digest.hexdigest(), expected.lower()):
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "the provided x-amz-content-sha256 header does not match what was computed",
            )

    def chunked_body(self, max_size: int) -> ChunkedBody | AsyncIterator[bytes]:
        """Like body(), but returns the ChunkedBody itself so its trailers can be read."""
        payload_hash = self.headers.get("x-amz-content-sha256", "")
        if payload_hash.startswith("STREAMING-"):
            return self._chunked(payload_hash, max_size)
        return self.body(max_size)

    async def read_xml(self) -> bytes:
        """A small request body (an XML document), refused past MAX_XML_BODY."""
        length = self.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_XML_BODY:
            raise S3Error("MaxMessageLengthExceeded", "the request body is too large")
        data = bytearray()
        async for chunk in self.body(MAX_XML_BODY):
            data += chunk
            if len(data) > MAX_XML_BODY:
                raise S3Error("MaxMessageLengthExceeded", "the request body is too large")
        return bytes(data)

    async def discard_body(self) -> None:
        async for _ in self._raw():
            pass


def decode_path(raw: str) -> str:
    return unquote(raw, encoding="utf-8", errors="strict")
