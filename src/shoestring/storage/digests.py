"""Reading a request body once while checking its size and its digests.

Both backends take bodies as async iterables of bytes; this is where the
MD5 (the ETag), Content-MD5 and `x-amz-checksum-*` values are computed and
compared before anything is committed, so a corrupted upload stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shoestring.storage.errors import BadDigest, EntityTooLarge

# Algorithms verified here. CRC32C and CRC64NVME need a native library
# (awscrt) that boto3 only uses when it is installed; their values are
# accepted unverified rather than refused, so such clients keep working.
VERIFIED_CHECKSUMS = frozenset({"crc32", "sha1", "sha256"})


class _CRC32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _hasher(algorithm: str) -> Any:
    if algorithm == "crc32":
        return _CRC32()
    return hashlib.new(algorithm)


@dataclass(slots=True)
class Expected:
    """Digests the client sent with the body (base64, as in the headers)."""

    content_md5: str | None = None
    # algorithm -> base64 value; None while it is still to come in a trailer
    checksums: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Expected:
        checksums: dict[str, str | None] = {
            name.removeprefix("x-amz-checksum-"): value
            for name, value in headers.items()
            if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"
        }
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        if trailer.startswith("x-amz-checksum-"):
            checksums.setdefault(trailer.removeprefix("x-amz-checksum-"), None)
        return cls(content_md5=headers.get("content-md5"), checksums=checksums)


class DigestingReader:
    """Feed chunks through `update`; `finish` raises BadDigest if a digest disagrees."""

    def __init__(self, expected: Expected | None, max_size: int) -> None:
        self.expected = expected or Expected()
        self.max_size = max_size
        self.size = 0
        self.md5 = hashlib.md5()  # noqa: S324 - S3's ETag is an MD5, not a security measure
        self._checksums = {
            name: _hasher(name) for name in self.expected.checksums if name in VERIFIED_CHECKSUMS
        }

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise EntityTooLarge(
                f"the object is larger than the limit of {self.max_size} bytes (storage.max_object_size)"
            )
        self.md5.update(chunk)
        for hasher in self._checksums.values():
            hasher.update(chunk)

    def finish(self, body: object = None) -> str:
        """Check every digest; return the ETag (quoted hex MD5).

        `body` is the iterable the chunks came from: an aws-chunked body
        carries its checksum in a trailer (`body.trailers`), known only now.
        """
        trailers: Mapping[str, str] = getattr(body, "trailers", None) or {}
        for name, trailer in trailers.items():
            if name.startswith("x-amz-checksum-"):
                self.expected.checksums[name.removeprefix("x-amz-checksum-")] = trailer
        digest = self.md5.digest()
        if self.expected.content_md5 is not None and _b64(digest) != self.expected.content_md5:
            raise BadDigest("the Content-MD5 you specified did not match what we received")
        for name, value in self.expected.checksums.items():
            hasher = self._checksums.get(name)
            if value is not None and hasher is not None and _b64(hasher.digest()) != value:
                raise BadDigest(
                    f"the x-amz-checksum-{name} you specified did not match what we received"
                )
        return f'"{digest.hex()}"'


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


async def iterate(body: AsyncIterable[bytes] | bytes) -> AsyncIterable[bytes]:
    """Bytes or an async iterable of bytes, as an async iterable."""
    if isinstance(body, bytes | bytearray | memoryview):
        yield bytes(body)
        return
    async for chunk in body:
        if chunk:
            yield chunk


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, dash, part count."""
    joined = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(part_etags)}"'  # noqa: S324
