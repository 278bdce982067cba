"""The fs backend's memory of objects it read lately: their parsed info and small bodies.

An object's file is named by a random id and never rewritten: a put, a copy
or a metadata change makes a new file and a new index row. So what was read
from an index row (and the file it names) stays true for as long as that row
exists, and is remembered under the row itself. Which row is current for a
key is remembered too (`RecentRows`), but only for as long as nothing at all
has committed to the index, in this process or another (`Index.version`), so
a change made anywhere is seen at once. Parsing the row's metadata, opening
and reading the file, and asking SQLite (a lock, a stat and an unlock of the
index under load) cost a small GET more than the rest of its work.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from shoestring.storage.objects import ObjectInfo

MAX_BODY = 64 * 1024  # bodies up to this size are kept
MAX_BYTES = 32 * 1024 * 1024  # all kept bodies together
MAX_ENTRIES = 8192


class RecentObjects:
    """A bounded, least-recently-used map from an index row to what it describes."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Any, ...], tuple[ObjectInfo, bytes | None]] = OrderedDict()
        self._bytes = 0

    def get(self, row: tuple[Any, ...]) -> tuple[ObjectInfo, bytes | None] | None:
        entry = self._entries.get(row)
        if entry is not None:
            self._entries.move_to_end(row)
        return entry

    def remember(self, row: tuple[Any, ...], info: ObjectInfo, body: bytes | None) -> None:
        if body is not None and len(body) > MAX_BODY:
            body = None
        previous = self._entries.pop(row, None)
        if previous is not None and previous[1] is not None:
            self._bytes -= len(previous[1])
        self._entries[row] = (info, body)
        self._bytes += len(body) if body is not None else 0
        while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped) if dropped is not None else 0


class RecentRows:
    """Which index row each key had, valid while the index's version stays the same."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._version: bytes | None = None

    def get(self, version: bytes | None, bucket: str, key: str) -> tuple[Any, ...] | None:
        if version is None or version != self._version:
            self._rows.clear()
            self._version = version
            return None
        return self._rows.get((bucket, key))

    def remember(self, version: bytes | None, bucket: str, key: str, row: tuple[Any, ...]) -> None:
        """`row`, read after `version` was: a commit in between makes the next `get` miss."""
        if version is None or version != self._version:
            return
        if len(self._rows) >= MAX_ENTRIES:
            self._rows.clear()
        self._rows[(bucket, key)] = row
