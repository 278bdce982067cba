"""The interface both database backends implement.

SQL is written once with `?` placeholders; the PostgreSQL backend translates
them to psycopg's `%s`. Rows are plain tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Literal, Protocol

from shoestring.errors import ShoestringError

Params = Sequence[Any]
Row = tuple[Any, ...]
Dialect = Literal["sqlite", "postgresql"]


class DatabaseError(ShoestringError):
    """The database could not be opened or a statement failed."""


class TransactionConflict(DatabaseError):
    """Two transactions waited on each other: this one was rolled back; run it again."""


class Transaction(Protocol):
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


current_transaction: ContextVar[Transaction | None] = ContextVar(
    "shoestring_transaction", default=None
)
"""The app's open transaction (`app.db` / `app.tables.transaction()`) in this task, if any:
table writes, rate-limit counts, jobs and mail queued meanwhile join it."""


class Database(Protocol):
    dialect: Dialect
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A read-write transaction: committed (durably) on exit, rolled back on error."""
        ...

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in a transaction of its own; return the rows it changed."""
        ...

    async def write_many(self, sql: str, rows: Sequence[Params]) -> int:
        """Run one statement per parameter row, all in one transaction."""
        ...

    async def write_batch(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements, in order, in one transaction of their own."""
        ...

    async def write_returning(
        self, sql: str, params: Params = (), *, durable: bool = True
    ) -> list[Row]:
        """Run one statement (`... RETURNING ...`) in a transaction of its own; return its rows.

        With `durable=False` it may return before its commit reaches the disk,
        and a crash soon after may lose it: for counts that may be lost, such
        as rate limits, at a fraction of the latency.
        """
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Read one row outside any write transaction."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        ...
