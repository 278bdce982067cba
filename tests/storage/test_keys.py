"""Any legal key is stored under the storage root and nowhere else, and comes back exactly."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoestring.storage import InvalidKey
from shoestring.storage.fs import FsBackend
from shoestring.storage.keys import check_key
from shoestring.storage.objects import BucketConfig, ObjectMeta

HOSTILE = st.one_of(
    st.text(min_size=1, max_size=300),
    st.lists(
        st.sampled_from(["..", ".", "", "/", "a", "%2e", "\\", "~", "é", " "]),
        min_size=1,
        max_size=40,
    ).map("/".join),
)


def _legal(key: str) -> bool:
    try:
        check_key(key)
    except InvalidKey:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(HOSTILE.filter(_legal), min_size=1, max_size=8, unique=True))
def test_keys_never_leave_the_root(keys: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp)
        root = outside / "storage"

        async def scenario() -> None:
            backend = FsBackend(root, max_object_size=1 << 20, fsync=False)
            await backend.open()
            try:
                await backend.create_bucket("b", BucketConfig())
                for n, key in enumerate(keys):
                    await backend.put("b", key, str(n).encode(), ObjectMeta(), None)
                for n, key in enumerate(keys):
                    assert await (await backend.get("b", key)).read() == str(n).encode()
                page = await backend.list_objects(
                    "b", prefix="", delimiter="", after="", max_keys=1000
                )
                assert sorted(o.key for o in page.objects) == sorted(keys)
            finally:
                await backend.close()

        asyncio.run(scenario())
        for directory, _, files in os.walk(outside):
            for name in files:
                path = Path(directory, name).resolve()
                assert root.resolve() in path.parents


@pytest.mark.parametrize("key", ["", "x" * 1025, "é" * 513, "nul\x00byte", "bell\x07"])
def test_illegal_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)
