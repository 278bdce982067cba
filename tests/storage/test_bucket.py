"""The Bucket API, one suite over both backends (fs, and s3 against a real S3 server)."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from shoestring.storage import (
    BadDigest,
    BucketAlreadyExists,
    BucketNotEmpty,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    RangeRequest,
)
from shoestring.storage.digests import Expected
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
    from shoestring.storage import ObjectMeta

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
    from shoestring.storage import ObjectMeta

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
