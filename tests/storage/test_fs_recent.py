"""The fs backend remembers objects it read; nothing it remembers is ever out of date."""

from __future__ import annotations

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
