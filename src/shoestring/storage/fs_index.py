"""The fs backend's index: buckets, objects and uploads in one SQLite file.

An object becomes visible when its row commits, never before: the data file
is already fsync'd under its final (random) name by then, so a crash leaves
either the old object or the new one, and at worst an unreferenced file that
`sweep` removes. Keys are stored as UTF-8 BLOBs so that SQLite's ordering and
range scans are S3's (UTF-8 byte order), prefixes included.

Reads run on the event loop's thread (a primary-key lookup costs microseconds
and serving a small object must not wait for a thread); writes run on one
writer thread, with `synchronous=FULL` so a commit is on disk when it returns.
`Index.version()` tells readers, for the price of a memory read, whether
anything has committed since they last asked (see `WalHeader`).

SCHEMA is the index as first released; MIGRATIONS change it from there, each
applied once, in order, and counted in SQLite's `user_version`, so an index
written by any earlier version opens and is brought up to date.
"""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoestring.db.sqlite import use_wal
from shoestring.storage.checksums import checksum_type
from shoestring.storage.objects import (
    Access,
    BucketConfig,
    BucketInfo,
    Checksum,
    CorsRule,
    ObjectInfo,
    ObjectMeta,
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS buckets (
        name TEXT PRIMARY KEY, created REAL NOT NULL, config TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS objects (
        bucket TEXT NOT NULL, key BLOB NOT NULL, file TEXT NOT NULL, size INTEGER NOT NULL,
        etag TEXT NOT NULL, mtime REAL NOT NULL, meta TEXT NOT NULL,
        PRIMARY KEY (bucket, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key BLOB NOT NULL,
        meta TEXT NOT NULL, initiated REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id)",
    """CREATE TABLE IF NOT EXISTS parts (
        upload_id TEXT NOT NULL, number INTEGER NOT NULL, file TEXT NOT NULL,
        size INTEGER NOT NULL, etag TEXT NOT NULL, mtime REAL NOT NULL,
        PRIMARY KEY (upload_id, number)
    ) WITHOUT ROWID""",
)

# Version n of the index is SCHEMA plus MIGRATIONS[:n].
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the x-amz-checksum-* value kept with an object or part (checksum_to_text),
    # and the algorithm and type a multipart upload names for its parts and object.
    (
        "ALTER TABLE objects ADD COLUMN checksum TEXT",
        "ALTER TABLE parts ADD COLUMN checksum TEXT",
        "ALTER TABLE uploads ADD COLUMN checksum_algorithm TEXT",
        "ALTER TABLE uploads ADD COLUMN checksum_type TEXT",
    ),
    # 2: the sizes of a multipart object's parts (JSON), for GET ?partNumber=N.
    ("ALTER TABLE objects ADD COLUMN parts TEXT",),
)

Row = tuple[Any, ...]
Statement = tuple[str, Sequence[Any]]
# A query run first in a write's transaction, and what must hold of its first row
# (the callable raises if not, and the transaction is rolled back).
Guard = tuple[str, Sequence[Any], Callable[[Row | None], None]]

_SCAN = "SELECT key, size, etag, mtime, meta, checksum FROM objects WHERE bucket = ? AND key "
_SCAN_FROM = _SCAN + ">= ?"
_SCAN_AFTER = _SCAN + "> ?"


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    connection.execute("PRAGMA busy_timeout = 10000")
    use_wal(connection, 10)
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA secure_delete = ON")  # a deleted object's key and metadata too
    return connection


def when(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def object_info(
    key: bytes, size: int, etag: str, mtime: float, meta: str, checksum: str | None = None,
    parts: str | None = None,
) -> ObjectInfo:  # fmt: skip
    return ObjectInfo(
        key=key.decode("utf-8"),
        size=size,
        etag=etag,
        last_modified=when(mtime),
        meta=ObjectMeta.from_json(json.loads(meta)),
        checksum=checksum_from_text(checksum),
        parts=tuple(json.loads(parts)) if parts else None,
    )


def checksum_to_text(checksum: Checksum | None) -> str | None:
    """A checksum as its column holds it: `crc32 FULL_OBJECT <base64>` (base64 has no spaces)."""
    if checksum is None:
        return None
    return f"{checksum.algorithm} {checksum.type} {checksum.value}"


def checksum_from_text(text: str | None) -> Checksum | None:
    if not text:
        return None
    algorithm, kind, value = text.split(" ", 2)
    return Checksum(algorithm, value, checksum_type(kind) or "FULL_OBJECT")


def config_to_json(config: BucketConfig) -> str:
    rules = [
        {
            "id": r.id,
            "origins": list(r.allowed_origins),
            "methods": list(r.allowed_methods),
            "headers": list(r.allowed_headers),
            "expose": list(r.expose_headers),
            "max_age": r.max_age_seconds,
        }
        for r in config.cors
    ]
    data: dict[str, Any] = {"access": config.access, "cors": rules}
    if config.versioning_suspended:
        data["versioning"] = "Suspended"
    return json.dumps(data)


def config_from_json(text: str) -> BucketConfig:
    data = json.loads(text)
    rules = tuple(
        CorsRule(
            id=r.get("id"),
            allowed_origins=tuple(r["origins"]),
            allowed_methods=tuple(r["methods"]),
            allowed_headers=tuple(r.get("headers", ())),
            expose_headers=tuple(r.get("expose", ())),
            max_age_seconds=r.get("max_age"),
        )
        for r in data.get("cors", ())
    )
    access: Access = "public-read" if data.get("access") == "public-read" else "private"
    suspended = data.get("versioning") == "Suspended"
    return BucketConfig(access=access, cors=rules, versioning_suspended=suspended)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class WalHeader:
    """The header SQLite keeps at the start of a WAL database's `-shm` file, mapped read-only.

    Every connection to the database, in any process, maps that file; after a
    transaction commits (and, with `synchronous=FULL`, is on disk), SQLite
    rewrites the header: its change counter, last frame, salts and checksums
    (https://www.sqlite.org/walformat.html, "The WAL-Index Header"). So two
    equal reads of its first 48 bytes mean nothing committed in between, and a
    write acknowledged before a read began has changed them. A read that
    overlaps the rewrite sees other bytes, which only costs a cache miss.
    """

    SIZE = 48  # the first of the header's two copies

    def __init__(self, database: Path) -> None:
        # Closing any descriptor of a file drops every POSIX lock this process
        # holds on it, SQLite's included: the one on `-shm` that tells other
        # processes the index is in use (without it the next one to open the
        # index rebuilds that file under us). So the descriptor, and the map's
        # own copy of it, stay open until `close`, after SQLite's connections.
        self._fd = os.open(f"{database}-shm", os.O_RDONLY)
        try:
            self._map = mmap.mmap(self._fd, self.SIZE, access=mmap.ACCESS_READ)
        except BaseException:
            os.close(self._fd)
            raise

    def read(self) -> bytes:
        return self._map[: self.SIZE]

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class Index:
    """SQL over the index file; every method is synchronous (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._header: WalHeader | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self._writer = connect(self.path)
        for statement in SCHEMA:
            self._writer.execute(statement)
        self._migrate(self._writer)
        self._reader = connect(self.path)
        try:
            self._header = WalHeader(self.path)
        except (OSError, ValueError):  # no -shm (not WAL, or exclusive locking): no shortcut
            self._header = None

    def version(self) -> bytes | None:
        """Equal values mean no transaction committed in between; None: unknown, ask SQL."""
        return self._header.read() if self._header is not None else None

    @staticmethod
    def _migrate(writer: sqlite3.Connection) -> None:
        """Apply the MIGRATIONS this index lacks, each in one transaction with its version."""
        current = writer.execute("PRAGMA user_version").fetchone()[0]
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            # Another process may open the same index at once: look again inside the lock.
            writer.execute("BEGIN IMMEDIATE")
            try:
                if writer.execute("PRAGMA user_version").fetchone()[0] < version:
                    for statement in statements:
                        writer.execute(statement)
                    writer.execute(f"PRAGMA user_version = {version}")
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")

    def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None
        if self._header is not None:  # last: see WalHeader
            self._header.close()
            self._header = None

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the storage index is not open: start the app first")
        return self._reader

    def write(
        self, statements: Sequence[Statement], guards: Sequence[Guard] = ()
    ) -> list[Row | None]:
        """Run statements in one IMMEDIATE transaction; return each one's first row (RETURNING).

        Each guard runs first, in the same transaction: if its check raises,
        nothing is written and the exception propagates.
        """
        if self._writer is None:
            raise RuntimeError("the storage index is not open: start the app first")
        with self._lock:
            writer = self._writer
            writer.execute("BEGIN IMMEDIATE")
            try:
                for sql, params, check in guards:
                    check(writer.execute(sql, params).fetchone())
                rows = [writer.execute(sql, params).fetchone() for sql, params in statements]
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")
            return rows

    def read_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.reader.execute(sql, params).fetchone()
        return row

    def read_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.reader.execute(sql, params).fetchall()

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Generator[Row, None, None]:
        """Rows as the caller reads them, for a caller that may stop early (then close it)."""
        cursor = self.reader.execute(sql, params)
        try:
            yield from cursor
        finally:
            cursor.close()

    # -- buckets -----------------------------------------------------------

    def buckets(self) -> list[BucketInfo]:
        rows = self.read_all("SELECT name, created FROM buckets ORDER BY name")
        return [BucketInfo(name, when(created)) for name, created in rows]

    def bucket_config(self, name: str) -> BucketConfig | None:
        row = self.read_one("SELECT config FROM buckets WHERE name = ?", (name,))
        return None if row is None else config_from_json(row[0])

    # -- objects -----------------------------------------------------------

    def lookup(self, bucket: str, key: str) -> Row | None:
        """(file, size, etag, mtime, meta, checksum, parts) of the object, or None."""
        return self.read_one(
            "SELECT file, size, etag, mtime, meta, checksum, parts FROM objects "
            "WHERE bucket = ? AND key = ?",
            (bucket, key.encode("utf-8")),
        )

    def scan(self, bucket: str, start: bytes, inclusive: bool, end: bytes | None) -> Iterator[Row]:
        """Objects of `bucket` from `start` (up to `end`, exclusive) in key order, in batches."""
        sql = _SCAN_FROM if inclusive else _SCAN_AFTER
        while True:
            params: list[Any] = [bucket, start]
            if end is not None:
                sql += " AND key < ?"
                params.append(end)
            rows = self.read_all(sql + " ORDER BY key LIMIT 500", params)
            yield from rows
            if len(rows) < 500:
                return
            start, sql = rows[-1][0], _SCAN_AFTER

    def referenced_files(self) -> set[str]:
        """Every data file a row names, read on a connection of its own.

        The sweep calls this from a worker thread while the event loop keeps
        using the shared reader; one sqlite3 connection must not serve two
        threads at once.
        """
        connection = connect(self.path)
        try:
            rows = connection.execute(
                "SELECT file FROM objects UNION ALL SELECT file FROM parts"
            ).fetchall()
        finally:
            connection.close()
        return {row[0] for row in rows}
