"""SQLite backend: WAL, foreign keys, busy timeout, synchronous=FULL by default.

sqlite3 calls block, so none runs on the event loop. Writes go through one
connection on one thread (SQLite allows one writer at a time anyway, and a
single thread makes `BEGIN IMMEDIATE ... COMMIT` spans simple). Reads use
their own connections on a small pool of threads; in WAL mode they never wait
for the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from shoestring.db.database import DatabaseError, Dialect, Params, Row

T = TypeVar("T")

READ_THREADS = 4


class SQLiteTransaction:
    """Statements on the writer thread; BEGIN rides along with the first one.

    Each trip to the writer thread costs about as much as a cached read
    (75-115 us measured here), so the transaction opens lazily and a
    single-statement write takes two trips, not three.
    """

    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database
        self.begun = False

    async def _run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        if self.begun:
            return await self._db._on_writer(call)
        self.begun = True

        def begin_then(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            return call(connection)

        return await self._db._on_writer(begin_then)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(lambda c: c.execute(sql, params).rowcount)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._run(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:  # BEGIN itself may have failed (busy)
        connection.execute("ROLLBACK")


class SQLiteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._write_lock = asyncio.Lock()

    def connect(self) -> sqlite3.Connection:
        """A new connection with shoestring's settings, for code that wants raw sqlite3."""
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._reader_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-reader")
            self._writer = await self._on_writer_thread(self.connect)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open SQLite database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None:
            writer = self._writer
            await self._on_writer_thread(writer.close)
            self._writer = None
        # Let reads still running (their callers may have been cancelled)
        # finish before their connections close under them.
        for pool in (self._writer_pool, self._reader_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._writer_pool = self._reader_pool = None
        for connection in self._reader_connections:
            connection.close()
        self._reader_connections.clear()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        async with self._write_lock:
            tx = SQLiteTransaction(self)
            try:
                yield tx
            except BaseException:
                if tx.begun:
                    await self._on_writer(_rollback)
                raise
            if tx.begun:
                await self._on_writer(lambda c: c.execute("COMMIT"))

    async def write(self, sql: str, params: Params = ()) -> int:
        # One trip to the writer thread for BEGIN, the statement and COMMIT.
        return await self._write_alone(lambda c: c.execute(sql, params).rowcount)

    async def write_many(self, sql: str, rows: Sequence[Params]) -> int:
        return await self._write_alone(lambda c: c.executemany(sql, rows).rowcount)

    async def _write_alone(self, call: Callable[[sqlite3.Connection], int]) -> int:
        def run(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            try:
                changed = call(connection)
            except BaseException:
                _rollback(connection)
                raise
            connection.execute("COMMIT")
            return changed

        async with self._write_lock:
            return await self._on_writer(run)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._on_reader(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._on_reader(lambda c: c.execute(sql, params).fetchall())

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")

    # -- threads -----------------------------------------------------------

    async def _on_writer_thread(self, call: Callable[[], T]) -> T:
        if self._writer_pool is None:
            raise DatabaseError("the database is not open: start the app first")
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, call)

    async def _on_writer(self, call: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None:
            raise DatabaseError("the database is not open: start the app first")
        return await self._on_writer_thread(lambda: call(writer))

    async def _on_reader(self, call: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_pool is None:
            raise DatabaseError("the database is not open: start the app first")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, lambda: call(self._reader())
        )

    def _reader(self) -> sqlite3.Connection:
        connection: Any = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self.connect()
            connection.execute("PRAGMA query_only = ON")
            self._readers.connection = connection
            self._reader_connections.append(connection)
        assert isinstance(connection, sqlite3.Connection)
        return connection
