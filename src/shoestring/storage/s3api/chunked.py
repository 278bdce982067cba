"""Decoding `Content-Encoding: aws-chunked` request bodies, verifying chunk signatures.

https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html

Three framings reach us: STREAMING-AWS4-HMAC-SHA256-PAYLOAD (each chunk
signed, chained from the request's signature), its -TRAILER variant (a
signed trailer at the end), and STREAMING-UNSIGNED-PAYLOAD-TRAILER, which
recent boto3 sends by default: plain chunks and a checksum trailer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

from shoestring.storage.s3api import sigv4
from shoestring.storage.s3api.errors import S3Error

MAX_LINE = 8192  # a chunk header or trailer line longer than this is not one
# The most of a chunk held in memory at once: the client chooses a chunk's size
# (a presigned PUT URL leaves even the framing to whoever holds it), so a chunk
# streams through in pieces and its signature is hashed piece by piece.
PIECE = 1024 * 1024


class ChunkedBody:
    """The decoded data of an aws-chunked body; `trailers` is filled once it is read."""

    def __init__(
        self,
        raw: AsyncIterator[bytes],
        *,
        mode: str,
        decoded_length: int | None,
        key: bytes | None = None,
        credential: sigv4.Credential | None = None,
        timestamp: str = "",
        seed_signature: str = "",
        max_size: int | None = None,
    ) -> None:
        self._raw = raw
        self._buffer = bytearray()
        self._done = False
        self.mode = mode
        self.signed = mode in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)
        self.has_trailer = mode != sigv4.STREAMING_SIGNED
        self.decoded_length = decoded_length
        self.max_size = max_size
        self._key = key
        self._credential = credential
        self._timestamp = timestamp
        self._previous = seed_signature
        self.trailers: dict[str, str] = {}

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                data = await anext(self._raw)
            except StopAsyncIteration:
                raise S3Error("IncompleteBody", "the request body ended inside a chunk") from None
            self._buffer += data

    async def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > MAX_LINE:
                raise S3Error(
                    "InvalidRequest", "malformed aws-chunked framing: header line too long"
                )
            await self._fill(len(self._buffer) + 1)

    async def _chunks(self) -> AsyncIterator[bytes]:
        total = 0
        while True:
            size, extension = self._chunk_header(await self._line())
            self._check_room(total, size)
            digest = hashlib.sha256() if self.signed else None
            remaining = size
            while remaining:
                await self._fill(1)
                piece = bytes(self._buffer[: min(remaining, PIECE)])
                del self._buffer[: len(piece)]
                remaining -= len(piece)
                if digest is not None:
                    digest.update(piece)
                # Yielded before the chunk's signature is checked: a consumer
                # commits nothing until the body ends, and a bad signature
                # ends it with an error instead.
                yield piece
            if digest is not None:
                self._verify_chunk(extension, digest.hexdigest())
            if size == 0:
                break
            await self._fill(2)
            if self._buffer[:2] != b"\r\n":
                raise S3Error(
                    "InvalidRequest", "malformed aws-chunked framing: chunk not terminated"
                )
            del self._buffer[:2]
            total += size
        if self.has_trailer:
            await self._read_trailers()
        if self.decoded_length is not None and total != self.decoded_length:
            raise S3Error(
                "IncompleteBody", "the body's length does not match x-amz-decoded-content-length"
            )

    @staticmethod
    def _chunk_header(header: bytes) -> tuple[int, str]:
        """A chunk header's size and extension (`;chunk-signature=...`)."""
        size_text, _, extension = header.decode("latin-1").partition(";")
        size_text = size_text.strip()
        if not size_text or len(size_text) > 16 or size_text.strip("0123456789abcdefABCDEF"):
            raise S3Error("InvalidRequest", "malformed aws-chunked framing: bad chunk size")
        return int(size_text, 16), extension

    def _check_room(self, total: int, size: int) -> None:
        """Refuse a chunk that would run past the size allowed or declared, before reading it."""
        if self.max_size is not None and total + size > self.max_size:
            raise S3Error(
                "EntityTooLarge", "your proposed upload exceeds the maximum allowed object size"
            )
        if self.decoded_length is not None and total + size > self.decoded_length:
            raise S3Error(
                "IncompleteBody", "the body's length does not match x-amz-decoded-content-length"
            )

    def _verify_chunk(self, extension: str, chunk_hash: str) -> None:
        name, _, signature = extension.partition("=")
        if name != "chunk-signature" or self._key is None or self._credential is None:
            raise S3Error("InvalidRequest", "a signed aws-chunked chunk lacks its chunk-signature")
        text = sigv4.chunk_string_to_sign(
            self._timestamp, self._credential, self._previous, chunk_hash
        )
        expected = sigv4.sign(self._key, text)
        if not hmac.compare_digest(expected, signature):
            raise S3Error("SignatureDoesNotMatch", "a chunk's signature does not match its data")
        self._previous = expected

    async def _read_trailers(self) -> None:
        lines: list[bytes] = []
        while True:
            line = await self._line()
            if not line:
                break
            lines.append(line)
            if len(lines) > 16:
                raise S3Error("InvalidRequest", "too many trailers in an aws-chunked body")
        signature = None
        canonical = b""
        for line in lines:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise S3Error("InvalidRequest", "malformed trailer in an aws-chunked body")
            name = name.strip().lower()
            if name == "x-amz-trailer-signature":
                signature = value.strip()
            else:
                self.trailers[name] = value.strip()
                canonical += f"{name}:{value.strip()}\n".encode("latin-1")
        if self.signed and self._key is not None and self._credential is not None:
            text = sigv4.trailer_string_to_sign(
                self._timestamp,
                self._credential,
                self._previous,
                hashlib.sha256(canonical).hexdigest(),
            )
            if signature is None or not hmac.compare_digest(sigv4.sign(self._key, text), signature):
                raise S3Error("SignatureDoesNotMatch", "the trailer's signature does not match")
