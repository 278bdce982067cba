"""The Bucket API, one suite over both backends (fs, and s3 against a real S3 server)."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from collections.abc import AsyncIterator

import pytest
from awscrt import checksums as crt_checksums

from shoestring.storage import (
    BadDigest,
    BucketAlreadyExists,
    BucketNotEmpty,
    Checksum,
    CompletedPart,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    ObjectMeta,
    RangeRequest,
)
from shoestring.storage.digests import Expected
from shoestring.storage.errors import InvalidChecksum
from tests.storage.conftest import ServerThread


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_put_get_head_delete(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage

    async def scenario() -> None:
        bucket = await storage.create_bucket("photos")
        info = await bucket.put("a/cat.txt", b"meow", metadata={"owner": "42"})
        assert info.etag == f'"{hashlib.md5(b"meow").hexdigest()}"'
        got = await bucket.get("a/cat.txt")
        assert await got.read() == b"meow"
        assert got.info.content_type == "text/plain"
        assert got.info.metadata == {"owner": "42"}
        head = await bucket.head("a/cat.txt")
        assert (head.size, head.etag) == (4, info.etag)
        assert await bucket.delete("a/cat.txt") is True
        assert await bucket.delete("a/cat.txt") is False
        with pytest.raises(NoSuchKey):
            await bucket.get("a/cat.txt")

    backend_server.call(scenario())


def test_streamed_put_and_ranges(backend_server: ServerThread) -> None:
    bucket = backend_server.app.storage.bucket("big")
    data = bytes(range(256)) * 4096  # 1 MiB, larger than one read chunk of the fs backend

    async def scenario() -> None:
        await bucket.create()
        await bucket.put("blob", _chunks(data, 65536))
        assert await bucket.read("blob") == data
        part = await bucket.get("blob", range=RangeRequest(10, 19))
        assert await part.read() == data[10:20]
        assert part.range is not None and part.range.length == 10
        tail = await bucket.get("blob", range=RangeRequest(None, 5))
        assert await tail.read() == data[-5:]
        with pytest.raises(InvalidRange):
            await bucket.get("blob", range=RangeRequest(len(data), None))

    backend_server.call(scenario())


def test_list_pages_prefixes_and_start_after(backend_server: ServerThread) -> None:
    bucket = backend_server.app.storage.bucket("listing")
    keys = ["a", "b/1", "b/2", "c/x/1", "d", "z", "é"]  # UTF-8 byte order, as S3

    async def scenario() -> list[object]:
        await bucket.create()
        await asyncio.gather(*(bucket.put(key, b"x") for key in keys))
        flat = [item.key async for item in bucket.list(page_size=2) if not isinstance(item, str)]
        assert flat == keys
        rolled = [
            item if isinstance(item, str) else item.key
            async for item in bucket.list(delimiter="/", page_size=2)
        ]
        assert rolled == ["a", "b/", "c/", "d", "z", "é"]
        under_b = [i.key async for i in bucket.list(prefix="b/") if not isinstance(i, str)]
        assert under_b == ["b/1", "b/2"]
        after = [i.key async for i in bucket.list(start_after="c/x/1") if not isinstance(i, str)]
        return after

    assert backend_server.call(scenario()) == ["d", "z", "é"]


def test_copy_keeps_or_replaces_metadata(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage

    async def scenario() -> None:
        src = await storage.create_bucket("src")
        dst = await storage.create_bucket("dst")
        await src.put("one", b"data", content_type="image/png", metadata={"k": "v"})
        kept = await dst.copy("one", "two", source_bucket="src")
        assert (await dst.head("two")).metadata == {"k": "v"}
        assert await dst.read("two") == b"data"
        assert kept.etag == (await src.head("one")).etag
        await dst.copy("two", "three", meta=ObjectMeta(content_type="text/csv"))
        replaced = await dst.head("three")
        assert (replaced.content_type, dict(replaced.metadata)) == ("text/csv", {})

    backend_server.call(scenario())


def test_bucket_lifecycle_errors(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage

    async def scenario() -> None:
        bucket = await storage.create_bucket("life")
        with pytest.raises(BucketAlreadyExists):
            await storage.create_bucket("life")
        await bucket.put("k", b"1")
        with pytest.raises(BucketNotEmpty):
            await bucket.delete_bucket()
        await bucket.delete("k")
        await bucket.delete_bucket()
        assert "life" not in [b.name for b in await storage.list_buckets()]
        with pytest.raises(NoSuchBucket):
            await storage.bucket("nothere").put("k", b"1")
        with pytest.raises(NoSuchBucket):
            await storage.bucket("nothere").get("k")

    backend_server.call(scenario())


def test_bad_digest_stores_nothing(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage

    async def scenario() -> None:
        bucket = await storage.create_bucket("digests")
        await bucket.put("k", b"old")
        wrong = Expected(content_md5="AAAAAAAAAAAAAAAAAAAAAA==")
        with pytest.raises(BadDigest):
            await bucket.put("k", b"new", expected=wrong)
        assert await bucket.read("k") == b"old"

    backend_server.call(scenario())


def test_multipart_etag_is_s3s(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage
    first, second = b"a" * (5 * 1024 * 1024), b"tail"

    async def scenario() -> str:
        bucket = await storage.create_bucket("multi")
        upload = await bucket.create_upload("big.bin", ObjectMeta())
        p2 = await bucket.upload_part("big.bin", upload.upload_id, 2, second)
        p1 = await bucket.upload_part("big.bin", upload.upload_id, 1, first)
        assert [p.number for p in await bucket.list_parts("big.bin", upload.upload_id)] == [1, 2]
        info = await bucket.complete_upload(
            "big.bin", upload.upload_id, [(1, p1.etag), (2, p2.etag)]
        )
        assert await bucket.read("big.bin") == first + second
        return info.etag

    digests = hashlib.md5(first).digest() + hashlib.md5(second).digest()
    assert backend_server.call(scenario()) == f'"{hashlib.md5(digests).hexdigest()}-2"'


def test_presigned_urls_work_from_plain_http(backend_server: ServerThread) -> None:
    import httpx

    bucket = backend_server.app.storage.bucket("shared")
    backend_server.call(bucket.create())
    put_url = bucket.presign_put("up/file.txt", expires=60)
    assert httpx.put(put_url, content=b"from a browser").status_code == 200
    get_url = bucket.presign_get("up/file.txt", expires=60)
    response = httpx.get(get_url)
    assert (response.status_code, response.content) == (200, b"from a browser")


def test_put_verifies_and_keeps_a_checksum(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage
    crc32 = base64.b64encode(zlib.crc32(b"data").to_bytes(4, "big")).decode()

    async def scenario() -> None:
        bucket = await storage.create_bucket("kept")
        info = await bucket.put("k", b"data", checksum=Checksum("CRC32", crc32))
        assert info.checksum == Checksum("crc32", crc32, "FULL_OBJECT")
        assert (await bucket.head("k")).checksum == info.checksum
        assert (await bucket.get("k")).info.checksum == info.checksum
        assert (await bucket.get("k", range=RangeRequest(0, 1))).info.checksum is None
        with pytest.raises(BadDigest):
            await bucket.put("k", b"other", checksum=Checksum("crc32", crc32))
        with pytest.raises(InvalidChecksum):
            await bucket.put("k", b"other", checksum=Checksum("crc32", "not base64"))
        assert await bucket.read("k") == b"data"
        # Uploaded without one, an object gets a CRC64NVME, as on S3 since 2025.
        crc64 = base64.b64encode(crt_checksums.crc64nvme(b"data").to_bytes(8, "big")).decode()
        plain = Checksum("crc64nvme", crc64, "FULL_OBJECT")
        assert (await bucket.put("plain", b"data")).checksum == plain
        assert (await bucket.head("plain")).checksum == plain
        copied = await bucket.copy("k", "copy", checksum_algorithm="sha256")
        sha256 = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
        assert (await bucket.head("copy")).checksum == copied.checksum == Checksum("sha256", sha256)

    backend_server.call(scenario())


def test_multipart_checksums_from_python(backend_server: ServerThread) -> None:
    storage = backend_server.app.storage
    first, second = b"a" * (5 * 1024 * 1024), b"tail"

    async def scenario() -> None:
        bucket = await storage.create_bucket("parts")
        upload = await bucket.create_upload("o", ObjectMeta(), checksum_algorithm="crc32")
        assert (upload.checksum_algorithm, upload.checksum_type) == ("crc32", "COMPOSITE")
        # No checksum sent: the part is checksummed with the upload's algorithm all the same.
        p1 = await bucket.upload_part("o", upload.upload_id, 1, first)
        p2 = await bucket.upload_part("o", upload.upload_id, 2, second)
        assert [p.checksum for p in await bucket.list_parts("o", upload.upload_id)] == [
            p1.checksum, p2.checksum,
        ]  # fmt: skip
        with pytest.raises(InvalidChecksum):  # an upload with a checksum needs each part's
            await bucket.complete_upload("o", upload.upload_id, [(1, p1.etag), (2, p2.etag)])
        listed = [CompletedPart(p.number, p.etag, p.checksum) for p in (p1, p2)]
        info = await bucket.complete_upload("o", upload.upload_id, listed)
        sums = zlib.crc32(first).to_bytes(4, "big") + zlib.crc32(second).to_bytes(4, "big")
        value = base64.b64encode(zlib.crc32(sums).to_bytes(4, "big")).decode() + "-2"
        assert (await bucket.head("o")).checksum == info.checksum
        assert info.checksum == Checksum("crc32", value, "COMPOSITE")

    backend_server.call(scenario())
