"""The fs backend remembers objects it read; nothing it remembers is ever out of date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoestring.storage.fs import FsBackend
from shoestring.storage.objects import BucketConfig, ObjectMeta, RangeRequest

pytestmark = pytest.mark.anyio


async def _read(backend: FsBackend, key: str, span: RangeRequest | None = None) -> bytes:
    return await (await backend.get("b", key, span)).read()


async def test_a_change_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    """Two backends on one directory, as two worker processes of one app are."""
    reader = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    writer = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    await reader.open()
    await writer.open()
    try:
        await writer.create_bucket("b", BucketConfig())
        await writer.put("b", "note", b"first", ObjectMeta(content_type="text/plain"), None)
        for _ in range(3):  # read (and remembered) more than once
            assert await _read(reader, "note") == b"first"
        assert await _read(reader, "note", RangeRequest(1, 3)) == b"irs"

        await writer.put("b", "note", b"second!", ObjectMeta(content_type="text/markdown"), None)
        got = await reader.get("b", "note")
        assert (await got.read(), got.info.meta.content_type) == (b"second!", "text/markdown")
        assert await _read(reader, "note", RangeRequest(None, 2)) == b"d!"

        await writer.copy("b", "note", "b", "note", ObjectMeta(content_type="text/x-new"))
        assert (await reader.head("b", "note")).meta.content_type == "text/x-new"

        await writer.delete("b", "note")
        with pytest.raises(Exception, match="does not exist"):
            await reader.get("b", "note")
    finally:
        await reader.close()
        await writer.close()


WRITE_FROM_ANOTHER_PROCESS = """
import asyncio, sys
import subprocess
import sys
from pathlib import Path
from shoestring.storage.fs import FsBackend
from shoestring.storage.objects import ObjectMeta

async def main() -> None:
    backend = FsBackend(Path(sys.argv[1]), max_object_size=1 << 20, fsync=True)
    await backend.open()
    try:
        if sys.argv[2] == "put":
            await backend.put("b", "note", sys.argv[3].encode(), ObjectMeta(), None)
        elif sys.argv[2] == "delete":
            await backend.delete("b", "note")
        else:  # only look, as `shoestring storage ls` does
            await backend.list_buckets()
    finally:
        await backend.close()

asyncio.run(main())
"""


def _other_process(root: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(root), *args],
        check=True,
        timeout=60,
    )


async def test_a_write_acknowledged_by_another_process_is_read_by_the_next_get(
    tmp_path: Path,
) -> None:
    """A worker process answering GETs from memory sees what another process committed."""

    def other_process(*args: str) -> None:
        _other_process(tmp_path, *args)

    reader = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    await reader.open()
    try:
        await reader.create_bucket("b", BucketConfig())
        other_process("put", "one")
        for _ in range(3):
            assert await _read(reader, "note") == b"one"
        before = reader.index.version()
        assert reader.index.version() == before  # nothing committed: the same version
        for text in ("two", "three"):
            other_process("put", text)
            assert await _read(reader, "note") == text.encode()
            assert await _read(reader, "note") == text.encode()
        other_process("delete")
        with pytest.raises(Exception, match="does not exist"):
            await reader.get("b", "note")
    finally:
        await reader.close()


async def test_another_process_opening_the_index_leaves_it_as_it_is(tmp_path: Path) -> None:
    """While a server has the index open, a CLI opening it must not rebuild its shared memory."""
    server = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    await server.open()
    try:
        await server.create_bucket("b", BucketConfig())
        await server.put("b", "note", b"kept", ObjectMeta(), None)
        seen = server.index.version()
        _other_process(tmp_path, "look")  # opens the index, reads, closes
        assert server.index.version() == seen  # nothing committed: the header is untouched
        assert await _read(server, "note") == b"kept"
    finally:
        await server.close()


async def test_a_reopened_backend_does_not_answer_from_before_it_closed(tmp_path: Path) -> None:
    """An App started twice (as a test client does) reads what changed in between."""
    setup = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    await setup.open()
    await setup.create_bucket("b", BucketConfig())
    await setup.close()
    _other_process(tmp_path, "put", "one")
    reader = FsBackend(tmp_path, max_object_size=1 << 20, fsync=False)
    await reader.open()
    assert await _read(reader, "note") == b"one"  # read, remembered, nothing written
    await reader.close()
    _other_process(tmp_path, "put", "two")
    await reader.open()  # a fresh index: its header may be byte for byte the one before
    try:
        assert await _read(reader, "note") == b"two"
    finally:
        await reader.close()
