"""`app.tables`: the document tables of an App, created and indexed on start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from shoestring.db.database import Database, Transaction
from shoestring.db.migrations import lock_schema
from shoestring.services import Health
from shoestring.tables import codec
from shoestring.tables.errors import InvalidItem, TableError, TablesNotStarted
from shoestring.tables.schema import (
    MIGRATIONS,
    IndexSpec,
    TableSpec,
    columns_sql,
    create_table_sql,
    index_sql,
)
from shoestring.tables.table import Item, Table

if TYPE_CHECKING:
    from shoestring.app import App

log = logging.getLogger("shoestring.tables")

REAP_INTERVAL = 60.0  # seconds between sweeps of expired items; reads hide them at once
BACKFILL_BATCH = 1000


class Tables:
    """The App's tables by name; a service that depends on `app.db`."""

    name = "tables"

    def __init__(self, app: App) -> None:
        self.app = app
        self._db = app.db
        self._db.add_migrations(MIGRATIONS)
        self._tables: dict[str, Table] = {}
        self._started = False
        self._reaper: asyncio.Task[None] | None = None

    def define(
        self,
        name: str,
        *,
        key: str = "id",
        sort_key: str | None = None,
        indexes: Iterable[str | tuple[str, str]] = (),
        ttl: str | None = None,
    ) -> Table:
        if name in self._tables:
            raise ValueError(f"table {name!r} is already defined")
        spec = TableSpec(name, key, sort_key, tuple(IndexSpec.parse(ix) for ix in indexes), ttl)
        table = self._tables[name] = Table(self, spec)
        return table

    def __getitem__(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r}; defined: {sorted(self._tables)}") from None

    def __iter__(self) -> Iterator[Table]:
        return iter(list(self._tables.values()))

    @property
    def database(self) -> Database:
        if not self._started:
            raise TablesNotStarted(
                "tables are usable once the app has started: in handlers, hooks and jobs"
            )
        return self._db.database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Writes (and reads) to any table inside the block commit together or not at all.

        The same transaction as `app.db.transaction()`, without its `tx`.
        """
        self.database  # noqa: B018 - TablesNotStarted before the app starts
        async with self._db.transaction():
            yield

    # -- service -------------------------------------------------------------

    async def start(self) -> None:
        database = self._db.database
        settings = self.app.settings.tables
        for table in self._tables.values():
            extra = settings[table.name].indexes if table.name in settings else []
            known = {ix.name for ix in table.spec.indexes}
            added = tuple(IndexSpec.parse(ix) for ix in extra if ix not in known)
            if added:
                table.spec = TableSpec(
                    table.spec.name,
                    table.spec.key,
                    table.spec.sort_key,
                    table.spec.indexes + added,
                    table.spec.ttl,
                )
            await _ensure(database, table)
        self._started = True
        if any(t.spec.ttl for t in self._tables.values()):
            self._reaper = asyncio.create_task(self._reap_forever())

    async def stop(self) -> None:
        self._started = False
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper

    async def health(self) -> Health:
        return Health(ok=self._started, detail="" if self._started else "not started")

    async def reap_expired(self) -> int:
        """Delete expired items now; return how many. Runs in the background every minute."""
        removed = 0
        for table in self._tables.values():
            if table.spec.ttl is None:
                continue
            name = table.spec.sql_name
            async with self.database.transaction() as tx:
                now = time.time()
                # The outer test again: PostgreSQL rechecks it, not the subquery, on a
                # row that a concurrent write gave a later expiry (refreshed, not expired).
                removed += await tx.execute(
                    f"DELETE FROM {name} WHERE (pk, sk) IN (SELECT pk, sk FROM {name} "
                    "WHERE expires_at <= ? LIMIT 10000) AND expires_at <= ?",
                    [now, now],
                )
        return removed

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            try:
                await self.reap_expired()
            except Exception:
                log.exception("removing expired items failed; will retry")


async def _ensure(database: Database, table: Table) -> None:
    """Create the table, check its key is unchanged, add and back-fill new indexes."""
    spec = table.spec
    async with database.transaction() as tx:
        await lock_schema(database, tx)  # nodes starting together create it once
        await tx.execute(create_table_sql(spec, database.dialect))
        row = await tx.fetchone(
            "SELECT key, sort_key, ttl FROM shoestring_tables WHERE name = ?", [spec.name]
        )
        if row is None:
            await tx.execute(
                "INSERT INTO shoestring_tables (name, key, sort_key, ttl) VALUES (?, ?, ?, ?)",
                [spec.name, spec.key, spec.sort_key or "", spec.ttl or ""],
            )
        elif (row[0], row[1]) != (spec.key, spec.sort_key or ""):
            raise TableError(
                f"table {spec.name} was created with key={row[0]!r} sort_key={row[1] or None!r}, "
                f"but the code now says key={spec.key!r} sort_key={spec.sort_key!r}. Keys cannot "
                "change in place: define a new table and copy the items over."
            )
        if spec.ttl:
            await tx.execute(
                f'CREATE INDEX IF NOT EXISTS "tbl_{spec.name}__expires" ON {spec.sql_name} (expires_at)'
            )
        if row is not None and row[2] != (spec.ttl or ""):
            await _recompute_expiry(tx, table)
        existing = {r[0] for r in await tx.fetchall(columns_sql(spec, database.dialect))}
        for index in spec.indexes:
            if index.column in existing:
                continue
            # DDL and back-fill in the write transaction: the index appears
            # complete or not at all, even if the process dies half-way.
            for statement in index_sql(spec, index, database.dialect):
                await tx.execute(statement)
            await _backfill(tx, table, index)


async def _recompute_expiry(tx: Transaction, table: Table) -> None:
    """The table's TTL field changed (or was added or removed): expiry times follow it."""
    spec = table.spec
    if spec.ttl is None:
        await tx.execute(
            f"UPDATE {spec.sql_name} SET expires_at = NULL WHERE expires_at IS NOT NULL"
        )
    else:
        count = await _rewrite(
            tx, table, lambda item: {"expires_at": table.expiry(item)}, f"its TTL field {spec.ttl}"
        )
        log.info("expiry of %d items of table %s computed from %s", count, spec.name, spec.ttl)
    await tx.execute(
        "UPDATE shoestring_tables SET ttl = ? WHERE name = ?", [spec.ttl or "", spec.name]
    )


async def _backfill(tx: Transaction, table: Table, index: IndexSpec) -> None:
    count = await _rewrite(
        tx, table, lambda item: table.index_values(item, index), f"index {index.name}"
    )
    if count:
        log.info("index %s of table %s built over %d items", index.name, table.name, count)


async def _rewrite(
    tx: Transaction, table: Table, columns: Callable[[Item], dict[str, Any]], what: str
) -> int:
    """Set `columns(item)` on every row of `table`; return how many rows there were."""
    name = table.spec.sql_name
    position: list[str] | None = None
    count = 0
    while True:
        after = "WHERE (pk, sk) > (?, ?) " if position else ""
        rows = await tx.fetchall(
            f"SELECT pk, sk, doc FROM {name} {after}ORDER BY pk, sk LIMIT ?",
            [*(position or []), BACKFILL_BATCH],
        )
        for pk, sk, doc in rows:
            item = codec.loads(doc)
            try:
                values = columns(item)
            except InvalidItem as exc:
                key = {k: item.get(k) for k in (table.spec.key, table.spec.sort_key) if k}
                raise TableError(
                    f"table {table.name} cannot follow {what}: item {key}: {exc}. Change "
                    "that item (and any other like it) first; the table is unchanged"
                ) from None
            sets = ", ".join(f"{column} = ?" for column in values)
            await tx.execute(
                f"UPDATE {name} SET {sets} WHERE pk = ? AND sk = ?", [*values.values(), pk, sk]
            )
        count += len(rows)
        if len(rows) < BACKFILL_BATCH:
            return count
        position = [rows[-1][0], rows[-1][1]]
