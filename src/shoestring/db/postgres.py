"""PostgreSQL backend: psycopg 3 with an async connection pool.

Statements use `?` placeholders like SQLite's; they are translated once per
statement text to psycopg's `%s` (literal `%` doubled).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shoestring.db.database import DatabaseError, Dialect, Params, Row, TransactionConflict


@lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTransaction:
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    async def _run(self, sql: str, params: Params) -> psycopg.AsyncCursor[Any]:
        try:
            return await self._connection.execute(to_psycopg(sql), params)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise TransactionConflict(
                "this transaction and another waited on each other's items, so it was rolled "
                "back: run it again (transactions that touch items in the same order never do this)"
            ) from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self._run(sql, params)).rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await (await self._run(sql, params)).fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await (await self._run(sql, params)).fetchall()


class PostgresDatabase:
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": True}
        )

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=10)
        except (psycopg.Error, Exception) as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        await self._pool.close()

    def connect(self) -> psycopg.Connection[Any]:
        """A new blocking connection, for code that wants raw psycopg."""
        return psycopg.connect(self.url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self._pool.connection() as connection, connection.transaction():
            yield PostgresTransaction(connection)

    async def write(self, sql: str, params: Params = ()) -> int:
        async with self._pool.connection() as connection:  # autocommit: its own transaction
            cursor = await connection.execute(to_psycopg(sql), params)
            return cursor.rowcount

    async def write_batch(self, statements: Sequence[tuple[str, Params]]) -> None:
        async with self._pool.connection() as connection, connection.transaction():
            for sql, params in statements:
                await connection.execute(to_psycopg(sql), params)

    async def write_returning(
        self, sql: str, params: Params = (), *, durable: bool = True
    ) -> list[Row]:
        async with self._pool.connection() as connection, connection.transaction():
            if not durable:
                await connection.execute("SET LOCAL synchronous_commit TO OFF")
            cursor = await connection.execute(to_psycopg(sql), params)
            return await cursor.fetchall()

    async def write_many(self, sql: str, rows: Sequence[Params]) -> int:
        async with self._pool.connection() as connection, connection.transaction():
            cursor = connection.cursor()
            await cursor.executemany(to_psycopg(sql), rows)
            return cursor.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(to_psycopg(sql), params)
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(to_psycopg(sql), params)
            return await cursor.fetchall()

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")
