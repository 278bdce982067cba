"""Reading a request body once while checking its size and its digests.

Both backends take bodies as async iterables of bytes; this is where the
MD5 (the ETag), Content-MD5 and `x-amz-checksum-*` values are computed and
compared before anything is committed, so a corrupted upload stores nothing.
A header naming no algorithm S3 defines (`x-amz-checksum-type`) is no checksum.
The checksum verified (or computed, for a part of an upload that names its
algorithm) is the one kept with the object or part (checksums.py).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoestring.storage.errors import BadDigest, EntityTooLarge, InvalidChecksum, InvalidDigest
from shoestring.storage.objects import Checksum


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _CRC:
    """A CRC as S3's checksum headers carry it: the big-endian integer, 4 or 8 bytes."""

    def __init__(self, function: Callable[[bytes, int], int], size: int) -> None:
        self._function = function
        self._size = size
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = self._function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self._size, "big")


class _XXHash:
    def __init__(self, new: Callable[[], Any]) -> None:
        self._state = new()

    def update(self, data: bytes) -> None:
        self._state.update(data)

    def digest(self) -> bytes:
        digest: bytes = self._state.finalize()
        return digest


def _crt() -> Any:
    """awscrt's checksums, loaded on first use: importing it costs ~90 ms of startup."""
    from awscrt import checksums

    return checksums


# Every `x-amz-checksum-*` algorithm S3 and boto3 know, each with its digest's
# length in bytes. The CRCs other than CRC32 and the xxhashes come from awscrt,
# AWS's own native library, which botocore uses to compute the same values.
CHECKSUMS: dict[str, tuple[Callable[[], Hasher], int]] = {
    "crc32": (lambda: _CRC(zlib.crc32, 4), 4),
    "crc32c": (lambda: _CRC(_crt().crc32c, 4), 4),
    "crc64nvme": (lambda: _CRC(_crt().crc64nvme, 8), 8),
    "sha1": (lambda: hashlib.sha1(), 20),  # noqa: S324 - integrity, as S3 defines it
    "sha256": (lambda: hashlib.sha256(), 32),
    "sha512": (lambda: hashlib.sha512(), 64),
    "md5": (lambda: hashlib.md5(), 16),  # noqa: S324 - integrity, as S3 defines it
    "xxhash64": (lambda: _XXHash(_crt().XXHash.new_xxhash64), 8),
    "xxhash3": (lambda: _XXHash(_crt().XXHash.new_xxhash3_64), 8),
    "xxhash128": (lambda: _XXHash(_crt().XXHash.new_xxhash3_128), 16),
}


def check_checksum_value(algorithm: str, value: str) -> None:
    """InvalidChecksum unless `value` is the base64 of a digest of `algorithm`'s length."""
    try:
        decoded = base64.b64decode(value, validate=True)
    except ValueError:
        decoded = b""
    if len(decoded) != CHECKSUMS[algorithm][1]:
        raise InvalidChecksum(f"Value for x-amz-checksum-{algorithm} header is invalid.")


@dataclass(slots=True)
class Expected:
    """Digests the client sent with the body (base64, as in the headers)."""

    content_md5: str | None = None
    # algorithm -> base64 value; None while it is still to come in a trailer
    checksums: dict[str, str | None] = field(default_factory=dict)
    # The trailer x-amz-trailer announced (lower-case); an aws-chunked body may end with no other.
    trailer: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Expected:
        """The digests of an S3 request's headers; InvalidChecksum if one is malformed."""
        checksums: dict[str, str | None] = {}
        for algorithm, value in request_checksums(headers).items():
            check_checksum_value(algorithm, value)
            checksums[algorithm] = value
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        if "," in trailer:
            raise InvalidChecksum("x-amz-trailer may announce one checksum trailer only")
        algorithm = trailer.removeprefix("x-amz-checksum-")
        if trailer.startswith("x-amz-checksum-") and algorithm in CHECKSUMS:
            checksums.setdefault(algorithm, None)
        check_single(checksums)
        content_md5 = headers.get("content-md5")
        if content_md5 is not None and not _is_md5(content_md5):
            raise InvalidDigest("the Content-MD5 you specified is not valid: 16 bytes in base64")
        return cls(content_md5=content_md5, checksums=checksums, trailer=trailer or None)


def _is_md5(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except ValueError:
        return False


def request_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """The `x-amz-checksum-<algorithm>` headers of a request, by algorithm, values unchecked."""
    found = {}
    for name, value in headers.items():
        algorithm = name.removeprefix("x-amz-checksum-")
        if name.startswith("x-amz-checksum-") and algorithm in CHECKSUMS:
            found[algorithm] = value
    return found


def check_single(checksums: Mapping[str, object]) -> None:
    """InvalidChecksum if a request names more than one checksum, as S3 refuses it."""
    if len(checksums) > 1:
        raise InvalidChecksum(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )


@dataclass(frozen=True, slots=True)
class Digested:
    """What reading a body found: its size, its ETag, and the checksum to keep with it."""

    size: int
    etag: str  # quoted hex MD5
    checksum: Checksum | None


class DigestingReader:
    """Feed chunks through `update`; `finish` raises BadDigest if a digest disagrees.

    `algorithm` is computed even when the client sends no value for it (a
    part of a multipart upload that named its algorithm); a value the client
    sends for another algorithm is then refused, as S3 refuses it.
    """

    def __init__(
        self, expected: Expected | None, max_size: int, *, algorithm: str | None = None
    ) -> None:
        self.expected = expected or Expected()
        self.max_size = max_size
        self.size = 0
        self.md5 = hashlib.md5()  # noqa: S324 - S3's ETag is an MD5, not a security measure
        named = list(self.expected.checksums)
        if algorithm is not None and named and named != [algorithm]:
            raise InvalidChecksum(
                f"Checksum Type mismatch occurred, expected checksum Type: {algorithm}, "
                f"actual checksum Type: {', '.join(named)}"
            )
        if algorithm is not None and not named:
            named = [algorithm]
        # Algorithms outside CHECKSUMS never get here (Expected.from_headers skips them).
        self._checksums = {name: CHECKSUMS[name][0]() for name in named}

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise EntityTooLarge(
                f"the object is larger than the limit of {self.max_size} bytes (storage.max_object_size)"
            )
        self.md5.update(chunk)
        for hasher in self._checksums.values():
            hasher.update(chunk)

    def finish(self, body: object = None) -> Digested:
        """Check every digest; return the size, the ETag and the checksum to keep.

        `body` is the iterable the chunks came from: an aws-chunked body
        carries its checksum in a trailer (`body.trailers`), known only now.
        Afterwards `expected.checksums` holds every value verified.
        """
        trailers: Mapping[str, str] = getattr(body, "trailers", None) or {}
        for name, trailer in trailers.items():
            # Only a trailer announced in x-amz-trailer was hashed while reading.
            if name != self.expected.trailer:
                raise InvalidChecksum(f"the trailer {name} was not announced in x-amz-trailer")
            algorithm = name.removeprefix("x-amz-checksum-")
            if name.startswith("x-amz-checksum-") and algorithm in self.expected.checksums:
                check_checksum_value(algorithm, trailer)
                header = self.expected.checksums[algorithm]
                if header is not None and header != trailer:  # a header said otherwise
                    raise BadDigest(
                        f"the x-amz-checksum-{algorithm} header and trailer do not agree"
                    )
                self.expected.checksums[algorithm] = trailer
        digest = self.md5.digest()
        if self.expected.content_md5 is not None and to_base64(digest) != self.expected.content_md5:
            raise BadDigest("the Content-MD5 you specified did not match what we received")
        checksum = None
        for algorithm, hasher in self._checksums.items():
            computed = hasher.digest()
            if algorithm in self.expected.checksums:
                value = self.expected.checksums[algorithm]
                if value is None:
                    raise InvalidChecksum(
                        f"the body ended without the x-amz-checksum-{algorithm} trailer "
                        "that x-amz-trailer announced"
                    )
                if base64.b64decode(value) != computed:
                    raise BadDigest(
                        f"The {algorithm.upper()} you specified did not match the calculated checksum."
                    )
            checksum = Checksum(algorithm, to_base64(computed))
        return Digested(self.size, f'"{digest.hex()}"', checksum)


def to_base64(digest: bytes) -> str:
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
