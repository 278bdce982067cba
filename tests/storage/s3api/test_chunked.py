"""aws-chunked bodies stream through in bounded pieces, whatever chunk size the client declares.

A presigned PUT URL signs no payload hash, so whoever holds one chooses the
framing: a chunk declared larger than the object may be is refused before
it is read, and a large allowed one never sits in memory whole.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx

from shoestring.config import StorageSettings
from tests.storage.conftest import ServerThread, serve
from tests.storage.s3api.test_auth import _chunked_put

MIB = 1024 * 1024
UNSIGNED = {
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "content-encoding": "aws-chunked",
}


def _presigned_put(server: ServerThread, bucket: str, key: str) -> str:
    server.call(server.app.storage.create_bucket(bucket))
    return server.app.storage.bucket(bucket).presign_put(key, expires=600)


def test_a_chunk_declared_past_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    server = serve(tmp_path, StorageSettings(max_object_size=10 * MIB))
    try:
        url = _presigned_put(server, "small", "k")
        declared = 300_000_000
        answer = httpx.put(
            url, content=f"{declared:x}\r\n".encode() + b"q" * 1000, headers=UNSIGNED
        )
        assert answer.status_code == 400 and b"EntityTooLarge" in answer.content
        past_declared = httpx.put(
            url,
            content=b"10\r\n" + b"q" * 16 + b"\r\n0\r\n\r\n",
            headers={**UNSIGNED, "x-amz-decoded-content-length": "8"},
        )
        assert past_declared.status_code == 400
        assert httpx.get(server.app.storage.bucket("small").presign_get("k")).status_code == 404
    finally:
        server.stop()


def test_a_large_chunk_streams_in_bounded_memory(tmp_path: Path) -> None:
    server = serve(tmp_path, StorageSettings(max_object_size=64 * MIB))
    try:
        url = _presigned_put(server, "big", "k")
        size, block = 48 * MIB, b"q" * MIB

        def framed() -> Iterator[bytes]:
            yield f"{size:x}\r\n".encode()
            for _ in range(size // MIB):
                yield block
            yield b"\r\n0\r\n\r\n"

        tracemalloc.start()
        try:
            answer = httpx.put(url, content=framed(), headers=UNSIGNED, timeout=60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert answer.status_code == 200, answer.text
        # Before: the whole chunk was buffered, then copied (twice its size at once).
        assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB while receiving a 48 MiB chunk"
        head = server.call(server.app.storage.bucket("big").head("k"))
        assert head.size == size
    finally:
        server.stop()


def test_signed_chunks_larger_than_a_piece_verify(server: ServerThread) -> None:
    server.call(server.app.storage.create_bucket("signed"))
    key = server.new_key()
    chunks = [b"a" * (2 * MIB + 123), b"b" * (3 * MIB)]
    ok = _chunked_put(server, key, chunks, tamper=False)
    assert ok.status_code == 200, ok.text
    assert server.call(server.app.storage.bucket("signed").read("obj")) == b"".join(chunks)
    bad = _chunked_put(server, key, [b"a" * (3 * MIB)], tamper=True)
    assert bad.status_code == 403 and b"SignatureDoesNotMatch" in bad.content
    assert server.call(server.app.storage.bucket("signed").head("obj")).size == 5 * MIB + 123
