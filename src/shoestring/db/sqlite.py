"""SQLite backend: WAL, foreign keys, busy timeout, synchronous=FULL by default.

sqlite3 calls block, so none runs on the event loop. Writes go through one
connection on one thread (SQLite allows one writer at a time anyway, and a
single thread makes `BEGIN IMMEDIATE ... COMMIT` spans simple). Reads use
their own connections on a small pool of threads; in WAL mode they never wait
for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from shoestring.db.database import DatabaseError, Dialect, Params, Row
from shoestring.db.threads import Threads

T = TypeVar("T")
log = logging.getLogger("shoestring.db")

READ_THREADS = 4
MAX_GROUP = 64  # transactions sharing one COMMIT, at most
MAX_GROUP_AGE = 0.005  # seconds a group stays open while transactions keep queuing
# Seconds between checkpoints that empty the WAL file: deleted rows (a delivered
# mail's body) stay in its old page images until then, for a copy of the files to find.
CHECKPOINT_INTERVAL = 60.0


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode, waiting up to `timeout` seconds for other processes.

    Switching a new file to WAL needs it to itself, and SQLite answers
    "database is locked" at once, without its busy timeout, while another
    process is switching or reading it: several processes starting on a new
    data directory (`run --workers`) met this. So it is retried here.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SQLiteTransaction:
    """Statements on the writer thread, inside a savepoint of the current commit group.

    Each trip to the writer thread costs about as much as a cached read
    (75-115 us measured here), so the savepoint opens lazily, with the first
    statement.
    """

    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database
        self.begun = False  # a statement went to the writer (which opens our savepoint first)

    async def _run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        if self.begun:
            return await self._db._on_writer(call)
        # Set before the trip: if our caller is cancelled while the statement
        # waits or runs, the rollback that follows must still close the savepoint.
        self.begun = True

        def open_then(connection: sqlite3.Connection) -> T:
            self._db._open_savepoint(connection)
            return call(connection)

        return await self._db._on_writer(open_then)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(lambda c: c.execute(sql, params).rowcount)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._run(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())


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
        self._writer_thread: Threads | None = None
        self._reader_threads: Threads | None = None
        self._writer: sqlite3.Connection | None = None
        self._in_savepoint = False  # the writer's state, changed on the writer thread only
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._write_lock = asyncio.Lock()
        self._writers = 0  # transactions holding or waiting for the write lock
        self._group: list[asyncio.Future[None]] = []  # finished, waiting for the group's COMMIT
        self._group_since = 0.0
        self._pending = False  # the writer holds released savepoints not yet committed
        self._flushes: set[asyncio.Task[None]] = set()
        self._flush_later: asyncio.Task[None] | None = None
        self._written = False  # since the last checkpoint
        self._checkpoints: asyncio.Task[None] | None = None

    def connect(self) -> sqlite3.Connection:
        """A new connection with shoestring's settings, for code that wants raw sqlite3."""
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        use_wal(connection, self.busy_timeout_ms / 1000)
        connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        connection.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (a delivered mail's body, a forgotten address) are
        # overwritten on disk, not left in free pages. Debian builds SQLite
        # this way; other builds need asking.
        connection.execute("PRAGMA secure_delete = ON")
        return connection

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer_thread = Threads(1, "sqlite-writer")
            self._reader_threads = Threads(READ_THREADS, "sqlite-reader")
            self._writer = await self._on_writer_thread(self.connect)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_forever())

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it (no reader may be mid-read)."""
        async with self._write_lock:
            await self._end(None, failed=False, force=True)  # a group still open commits first
            self._written = False
            await self._on_writer(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            if not self._written:
                continue
            try:
                await self.checkpoint()
            except (sqlite3.Error, DatabaseError) as exc:  # a reader held on: next time
                log.warning("emptying the WAL of %s failed: %s", self.path.name, exc)

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._writer is not None:
            for flush in list(self._flushes):
                await flush
            async with self._write_lock:  # commit a group still waiting for its last member
                await self._end(None, failed=False, force=True)
            writer = self._writer
            await self._on_writer_thread(writer.close)
            self._writer = None
        # Let reads still running (their callers may have been cancelled)
        # finish before their connections close under them.
        for threads in (self._writer_thread, self._reader_threads):
            if threads is not None:
                threads.shutdown()
        self._writer_thread = self._reader_threads = None
        for connection in self._reader_connections:
            connection.close()
        self._reader_connections.clear()

    # -- writes: transactions in commit groups ---------------------------------
    #
    # A COMMIT with synchronous=FULL waits for fsync (about 1 ms on this
    # machine's disk), so one COMMIT per transaction caps the whole app at
    # about a thousand writes a second. Instead, transactions that queue up
    # behind each other share one: each runs in a SAVEPOINT of an open
    # BEGIN IMMEDIATE, and the last of a run of queued transactions (or the
    # one that makes the group MAX_GROUP long or MAX_GROUP_AGE old) COMMITs
    # for all. No caller returns before that COMMIT: acknowledged still means
    # on disk. A transaction alone commits at once, as before. If a COMMIT
    # fails, every member of its group gets the error; none was acknowledged.
    #
    # A write that need not be durable (`durable=False`: a rate-limit count)
    # returns as soon as its savepoint is released, without a COMMIT of its
    # own: the next durable transaction's COMMIT takes it along, or a flush
    # MAX_GROUP_AGE later does.

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        durable: asyncio.Future[None] | None = None
        async with self._queued():
            tx = SQLiteTransaction(self)
            try:
                yield tx
            except BaseException:
                await self._end(tx, failed=True)
                raise
            durable, _ = await self._end(tx, failed=False)
        if durable is not None:
            await durable

    async def write(self, sql: str, params: Params = ()) -> int:
        return await self._write_once(lambda c: c.execute(sql, params).rowcount)

    async def write_many(self, sql: str, rows: Sequence[Params]) -> int:
        return await self._write_once(lambda c: c.executemany(sql, rows).rowcount)

    async def write_batch(self, statements: Sequence[tuple[str, Params]]) -> None:
        def run(connection: sqlite3.Connection) -> None:
            for sql, params in statements:
                connection.execute(sql, params).fetchall()

        await self._write_once(run)

    async def write_returning(
        self, sql: str, params: Params = (), *, durable: bool = True
    ) -> list[Row]:
        return await self._write_once(lambda c: c.execute(sql, params).fetchall(), sync=durable)

    async def _write_once(self, work: Callable[[sqlite3.Connection], T], sync: bool = True) -> T:
        """`work` as a transaction of its own, joined to the commit group in one trip.

        The savepoint, the statement, its release and (when due) the group's
        COMMIT all run in a single hop to the writer thread. With `sync`
        False, no COMMIT is waited for.
        """
        async with self._queued():
            durable, result = await self._end(None, failed=False, work=work, sync=sync)
        if durable is not None:
            await durable
        return cast(T, result)  # what `work` returned: it raised otherwise

    @asynccontextmanager
    async def _queued(self) -> AsyncIterator[None]:
        """Hold the write lock, counted among the writers queued for it meanwhile."""
        self._writers += 1
        try:
            async with self._write_lock:
                yield
        finally:
            self._writers -= 1
            if self._writers == 0 and self._pending:
                # The member due to commit never got the lock (it was cancelled),
                # or only writes that need not wait are in the group.
                self._flush_soon()

    def _open_savepoint(self, connection: sqlite3.Connection) -> None:
        """On the writer thread: join the open group, or begin one."""
        if not connection.in_transaction:
            connection.execute("BEGIN IMMEDIATE")
            self._group_since = time.monotonic()
        connection.execute("SAVEPOINT tx")
        self._in_savepoint = True

    def _commit_due(self) -> bool:
        """Holding the write lock: does no queued transaction follow, or is the group full?"""
        return (
            self._writers <= 1
            or len(self._group) >= MAX_GROUP
            or time.monotonic() - self._group_since > MAX_GROUP_AGE
        )

    async def _end(
        self,
        tx: SQLiteTransaction | None,
        *,
        failed: bool,
        force: bool = False,
        work: Callable[[sqlite3.Connection], T] | None = None,
        sync: bool = True,
    ) -> tuple[asyncio.Future[None] | None, T | None]:
        """Holding the write lock: close `tx`'s savepoint and COMMIT the group if due, in one trip.

        With `work`, the savepoint opens, runs `work` and closes on that same
        trip. Returns what to await for durability (None when nothing was
        written) and what `work` returned; an error from `work` rolls back
        its savepoint only and is raised after the trip. With `sync` False
        the group is committed only if others wait for it.
        """
        begun = work is not None or (tx is not None and tx.begun)
        self._written = self._written or begun
        commit = force or (self._commit_due() and (sync or bool(self._group)))
        if not begun and not (commit and self._pending):
            return None, None
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[None] | None = None
        if begun and not failed and sync:
            durable = loop.create_future()
            self._group.append(durable)

        def finish(connection: sqlite3.Connection) -> tuple[T | None, BaseException | None]:
            result: T | None = None
            work_error: BaseException | None = None
            try:
                if work is not None:
                    self._open_savepoint(connection)
                    try:
                        result = work(connection)
                    except Exception as exc:
                        work_error = exc
                if self._in_savepoint:
                    if failed or work_error is not None:
                        connection.execute("ROLLBACK TO tx")
                    connection.execute("RELEASE tx")
                    self._in_savepoint = False
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                self._in_savepoint = False
                raise
            if commit and connection.in_transaction:
                try:
                    connection.execute("COMMIT")
                except sqlite3.Error as exc:
                    connection.execute("ROLLBACK")
                    raise DatabaseError(f"the commit failed, nothing was kept: {exc}") from exc
            return result, work_error

        members = self._group if commit else []
        if commit:
            self._group = []

        def settle(done: asyncio.Future[tuple[T | None, BaseException | None]]) -> None:
            # A callback, so the group is settled even if our caller is cancelled.
            error = done.exception() if not done.cancelled() else DatabaseError("cancelled")
            if error is not None:
                self._pending = False  # the writer rolled the whole group back
            if error is not None and not commit:
                # Only our savepoint failed to close: the group is still open, but
                # its state is unknown, so roll it back and fail everyone in it.
                members.extend(self._group)
                self._group = []
            for member in members:
                if member.done():
                    continue
                if error is None:
                    member.set_result(None)
                elif isinstance(error, DatabaseError):
                    member.set_exception(DatabaseError(str(error)))
                else:
                    member.set_exception(
                        DatabaseError(f"the commit failed, nothing was kept: {error}")
                    )

        trip = asyncio.ensure_future(self._on_writer(finish))
        trip.add_done_callback(settle)
        result, work_error = await asyncio.shield(trip)
        if commit:
            self._pending = False
        elif begun and not failed and work_error is None:
            self._pending = True
        if work_error is not None:
            # Nothing of ours was kept: leave the group without waiting for it.
            if durable is not None:
                if durable in self._group:
                    self._group.remove(durable)
                if not durable.done():
                    durable.set_result(None)
            raise work_error
        return durable, result

    def _flush_soon(self) -> None:
        # Only writes that need not wait are in the group: commit them a moment
        # later, with whatever joins meanwhile; one such flush at a time.
        later = not self._group
        if later and self._flush_later is not None and not self._flush_later.done():
            return

        async def flush() -> None:
            if later:
                await asyncio.sleep(MAX_GROUP_AGE)
            async with self._write_lock:
                await self._end(None, failed=False, force=True)

        task = asyncio.get_running_loop().create_task(flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        if later:
            self._flush_later = task

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._on_reader(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._on_reader(lambda c: c.execute(sql, params).fetchall())

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")

    # -- threads -----------------------------------------------------------

    async def _on_writer_thread(self, call: Callable[[], T]) -> T:
        if self._writer_thread is None:
            raise DatabaseError("the database is not open: start the app first")
        return await self._writer_thread.run(call)

    async def _on_writer(self, call: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None:
            raise DatabaseError("the database is not open: start the app first")
        return await self._on_writer_thread(lambda: call(writer))

    async def _on_reader(self, call: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_threads is None:
            raise DatabaseError("the database is not open: start the app first")
        return await self._reader_threads.run(lambda: call(self._reader()))

    def _reader(self) -> sqlite3.Connection:
        connection: Any = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self.connect()
            connection.execute("PRAGMA query_only = ON")
            self._readers.connection = connection
            self._reader_connections.append(connection)
        assert isinstance(connection, sqlite3.Connection)
        return connection
