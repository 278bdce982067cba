"""Table: schemaless items with a key, an optional sort key, indexes and TTL.

    notes = app.table("notes", key="id", indexes=["owner"])
    await notes.put({"id": "n1", "owner": "ada", "text": "hi"}, if_not_exists=True)
    page = await notes.query("ada", index="owner", limit=20)

Conditions are evaluated inside the write's transaction with the row locked,
so of several writers racing on one key with the same condition exactly one
wins; the others get ConditionFailed and change nothing.

Inside `app.tables.transaction()`, every item the block reads or writes by
key stays locked until it ends, so a read-modify-write never loses an update.
On SQLite transactions run one at a time anyway; on PostgreSQL each key is
locked (even one with no item yet), and two transactions that lock the same
keys in opposite orders can deadlock: one of them gets TransactionConflict.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shoestring.db.database import Database, Params, Transaction, current_transaction
from shoestring.tables import codec
from shoestring.tables.errors import ConditionFailed, InvalidItem, UnknownIndex
from shoestring.tables.schema import IndexSpec, TableSpec

if TYPE_CHECKING:
    from shoestring.jobs import Job
    from shoestring.tables.service import Tables

Item = dict[str, Any]
Key = Any  # the key value, or (key, sort key) for tables with a sort key
Condition = Mapping[str, Any] | Callable[[Item | None], bool]
ChangeEvent = dict[str, Any]

MAX_PAGE = 1000


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""In a condition, `{"field": MISSING}` holds when the item lacks the field (or does not exist)."""


async def write_joined(database: Database, sql: str, params: Params) -> int:
    """One statement in the open `app.tables.transaction()`, else committed on its own.

    Inside a transaction it must join it: on SQLite the transaction holds the
    write lock until it ends, so a write of its own would wait for it forever.
    """
    joined = current_transaction.get()
    if joined is not None:
        return await joined.execute(sql, params)
    return await database.write(sql, params)


@dataclass(frozen=True, slots=True)
class Page:
    """A page of items and the cursor for the next one (None at the end)."""

    items: list[Item]
    cursor: str | None


def holds(condition: Condition | None, item: Item | None) -> bool:
    if condition is None:
        return True
    if callable(condition):
        return bool(condition(item))
    for field, expected in condition.items():
        actual = _get_path(item, field) if item is not None else MISSING
        if actual is not expected and not same(actual, expected):
            return False
    return True


def same(a: Any, b: Any) -> bool:
    """Equal as stored values: like ==, but a bool equals only a bool (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _get_path(item: Item, path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _set_path(item: Item, path: str, value: Any) -> None:
    """Set a dotted path, making the dicts it goes through; never through another value."""
    *parents, last = path.split(".")
    target = item
    for depth, part in enumerate(parents):
        if part not in target:
            target[part] = {}
        child = target[part]
        if not isinstance(child, dict):
            through = ".".join(parents[: depth + 1])
            raise InvalidItem(
                f"cannot set {path}: {through} holds a {type(child).__name__}, not a dict; "
                f"set {through} itself to replace it"
            )
        target = child
    target[last] = value


def _remove_path(item: Item, path: str) -> None:
    *parents, last = path.split(".")
    target: Any = item
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(last, None)


def _encode_cursor(values: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        values = None
    if not (
        isinstance(values, list) and len(values) == size and all(isinstance(v, str) for v in values)
    ):
        raise InvalidItem(
            "cursor is not one this query gave out; pass back `page.cursor` unchanged"
        )
    return values


class Table:
    def __init__(self, tables: Tables, spec: TableSpec) -> None:
        self._tables = tables
        self.spec = spec
        self.name = spec.name
        self._triggers: list[Job[[ChangeEvent]]] = []

    def on_change(
        self, *, retries: int = 3, name: str | None = None
    ) -> Callable[[Callable[[ChangeEvent], Awaitable[Any]]], Job[[ChangeEvent]]]:
        """Run the decorated async function as a job after every put, update and delete.

        The job is enqueued in the same transaction as the write, so it runs
        exactly when the write committed. It receives a ChangeEvent dict:
        `{"table", "op" ("put" | "update" | "delete"), "key", "item" (None on delete)}`.
        """

        def decorator(function: Callable[[ChangeEvent], Awaitable[Any]]) -> Job[[ChangeEvent]]:
            job_name = name or f"{self.name}.on_change.{function.__qualname__}"
            job = self._tables.app.job(retries=retries, name=job_name)(function)
            self._triggers.append(job)
            return job

        return decorator

    async def _emit(self, tx: Transaction, op: str, key: Key, item: Item | None) -> None:
        event = {"table": self.name, "op": op, "key": key, "item": item}
        for job in self._triggers:
            await self._tables.app.jobs.enqueue_in(tx, job, (event,))

    def _key_value(self, item: Item) -> Key:
        if self.spec.sort_key is None:
            return item[self.spec.key]
        return (item[self.spec.key], item[self.spec.sort_key])

    def __repr__(self) -> str:
        return f"<Table {self.name} key={self.spec.key!r} sort_key={self.spec.sort_key!r}>"

    # -- plumbing ------------------------------------------------------------

    @property
    def _db(self) -> Database:
        return self._tables.database

    @asynccontextmanager
    async def _write(self, *keys: tuple[str, str]) -> AsyncIterator[Transaction]:
        joined = current_transaction.get()
        if joined is not None:
            await self._lock(joined, keys)
            yield joined
            return
        async with self._db.transaction() as tx:
            yield tx

    async def _lock(self, tx: Transaction, keys: Iterable[tuple[str, str]]) -> None:
        """On PostgreSQL, hold `keys` (present or not) until `tx` ends: see the module docstring.

        In one statement, taken in key order, so one transaction's batch never
        deadlocks another's.
        """
        if self._db.dialect != "postgresql":
            return  # SQLite: the transaction has the database to itself already
        locks = [
            int.from_bytes(
                hashlib.blake2b(f"{self.name}\0{pk}\0{sk}".encode(), digest_size=8).digest(),
                signed=True,
            )
            for pk, sk in sorted(set(keys))
        ]
        if locks:
            # unnest yields the array's elements in order: the locks are taken in it.
            await tx.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k", [locks]
            )

    def _encode_key(self, key: Key) -> tuple[str, str]:
        spec = self.spec
        if spec.sort_key is None:
            return codec.sortable(key, f"key {spec.key}"), ""
        if not (isinstance(key, tuple | list) and len(key) == 2):
            raise InvalidItem(
                f"table {self.name} has a sort key: pass the key as ({spec.key}, {spec.sort_key})"
            )
        return codec.sortable(key[0], f"key {spec.key}"), codec.sortable(
            key[1], f"sort key {spec.sort_key}"
        )

    def _key_of(self, item: Item) -> tuple[str, str]:
        if not isinstance(item, dict):
            raise InvalidItem(f"an item is a dict, not a {type(item).__name__}")
        parts = [self.spec.key] + ([self.spec.sort_key] if self.spec.sort_key else [])
        for part in parts:
            if part not in item:
                raise InvalidItem(f"item has no {part!r}, the key of table {self.name}")
        values = tuple(item[p] for p in parts)
        return self._encode_key(values if self.spec.sort_key else values[0])

    def _row(self, item: Item) -> dict[str, Any]:
        pk, sk = self._key_of(item)
        row: dict[str, Any] = {
            "pk": pk,
            "sk": sk,
            "doc": codec.dumps(item),
            "expires_at": self.expiry(item),
        }
        for index in self.spec.indexes:
            row.update(self.index_values(item, index))
        return row

    def index_values(self, item: Item, index: IndexSpec) -> dict[str, str | None]:
        """The index's columns for `item`: all None (not in the index) unless it has every field."""
        values = {index.column: self._index_value(item, index.field, index.name)}
        if index.sort_field:
            values[index.sort_column] = self._index_value(item, index.sort_field, index.name)
        if None in values.values():
            return dict.fromkeys(values)  # sparse: items without the fields are not in it
        return values

    def _index_value(self, item: Item, field: str, index: str) -> str | None:
        value = _get_path(item, field)
        if value is MISSING or value is None:
            return None
        return codec.sortable(value, f"{field} (indexed by {index})")

    def expiry(self, item: Item) -> float | None:
        if self.spec.ttl is None:
            return None
        value = item.get(self.spec.ttl)
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise InvalidItem(f"{self.spec.ttl} must be a timezone-aware datetime")
            return value.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise InvalidItem(f"{self.spec.ttl} (the TTL field) must be epoch seconds or a datetime")

    def _live(self) -> tuple[str, list[Any]]:
        if self.spec.ttl is None:
            return "", []
        return " AND (expires_at IS NULL OR expires_at > ?)", [time.time()]

    def _for_update(self) -> str:
        return " FOR UPDATE" if self._db.dialect == "postgresql" else ""

    async def _locked(self, tx: Transaction, pk: str, sk: str) -> Item | None:
        live, live_params = self._live()
        row = await tx.fetchone(
            f"SELECT doc FROM {self.spec.sql_name} WHERE pk = ? AND sk = ?{live}{self._for_update()}",
            [pk, sk, *live_params],
        )
        return codec.loads(row[0]) if row else None

    def _upsert_sql(self, row: dict[str, Any], *, only_if_absent: bool) -> tuple[str, list[Any]]:
        params = list(row.values())
        if only_if_absent:
            params.append(time.time())
        return _upsert_statement(self.spec.sql_name, tuple(row), only_if_absent), params

    async def _upsert(self, tx: Transaction, row: dict[str, Any], *, only_if_absent: bool) -> bool:
        sql, params = self._upsert_sql(row, only_if_absent=only_if_absent)
        return await tx.execute(sql, params) == 1

    # -- writes ----------------------------------------------------------------

    async def put(
        self, item: Item, *, if_not_exists: bool = False, condition: Condition | None = None
    ) -> None:
        """Store `item` whole, replacing any item with its key.

        `if_not_exists=True` fails if a (live) item with the key exists;
        `condition` must hold for the current item (None if absent).
        Raises ConditionFailed, having changed nothing.
        """
        row = self._row(item)
        key = row["pk"], row["sk"]
        if condition is None and not self._triggers and current_transaction.get() is None:
            sql, params = self._upsert_sql(row, only_if_absent=if_not_exists)
            if await self._db.write(sql, params) != 1 and if_not_exists:
                raise ConditionFailed(f"an item with this key already exists in {self.name}")
            return
        async with self._write(key) as tx:
            if condition is not None:
                current = await self._locked(tx, row["pk"], row["sk"])
                if not holds(condition, current):
                    raise ConditionFailed(f"condition on {self.name} item did not hold")
                if current is None:
                    if_not_exists = True  # don't overwrite an item that appeared meanwhile
            if not await self._upsert(tx, row, only_if_absent=if_not_exists) and if_not_exists:
                raise ConditionFailed(f"an item with this key already exists in {self.name}")
            await self._emit(tx, "put", self._key_value(item), item)

    async def update(
        self,
        key: Key,
        *,
        set: Mapping[str, Any] | None = None,
        increment: Mapping[str, int | float] | None = None,
        remove: Iterable[str] = (),
        condition: Condition | None = None,
    ) -> Item:
        """Change fields of one item atomically (creating it if absent); return the new item.

        Field names may be dotted paths into nested dicts (`"stats.views"`).
        """
        pk, sk = self._encode_key(key)
        for _attempt in range(3):
            async with self._write((pk, sk)) as tx:
                current = await self._locked(tx, pk, sk)
                if not holds(condition, current):
                    raise ConditionFailed(f"condition on {self.name} item did not hold")
                item = current if current is not None else self._new_item(key)
                for path, value in (set or {}).items():
                    _set_path(item, path, value)
                for path, amount in (increment or {}).items():
                    if not isinstance(amount, int | float) or isinstance(amount, bool):
                        raise InvalidItem(
                            f"cannot increment {path} by {amount!r}: the amount must be a number"
                        )
                    base = _get_path(item, path)
                    base = 0 if base is MISSING else base
                    if not isinstance(base, int | float) or isinstance(base, bool):
                        raise InvalidItem(
                            f"cannot increment {path}: it holds a {type(base).__name__}"
                        )
                    _set_path(item, path, base + amount)
                for path in remove:
                    _remove_path(item, path)
                row = self._row(item)
                if (row["pk"], row["sk"]) != (pk, sk):
                    raise InvalidItem("update cannot change an item's key; delete and put instead")
                if (
                    await self._upsert(tx, row, only_if_absent=current is None)
                    or current is not None
                ):
                    await self._emit(tx, "update", key, item)
                    return item
            # Another writer created the item between our read and insert
            # (PostgreSQL cannot lock a row that does not exist yet): redo.
        raise ConditionFailed(f"the {self.name} item kept changing under concurrent writers; retry")

    def _new_item(self, key: Key) -> Item:
        if self.spec.sort_key is None:
            return {self.spec.key: key}
        return {self.spec.key: key[0], self.spec.sort_key: key[1]}

    async def delete(self, key: Key, *, condition: Condition | None = None) -> bool:
        """Delete one item; return whether it existed."""
        pk, sk = self._encode_key(key)
        live, live_params = self._live()
        sql = f"DELETE FROM {self.spec.sql_name} WHERE pk = ? AND sk = ?{live}"
        if condition is None and not self._triggers and current_transaction.get() is None:
            return await self._db.write(sql, [pk, sk, *live_params]) > 0
        async with self._write((pk, sk)) as tx:
            if condition is not None:
                current = await self._locked(tx, pk, sk)
                if not holds(condition, current):
                    raise ConditionFailed(f"condition on {self.name} item did not hold")
            deleted = await tx.execute(sql, [pk, sk, *live_params]) > 0
            if deleted:
                await self._emit(tx, "delete", key, None)
            return deleted

    async def batch_put(self, items: Iterable[Item]) -> None:
        """Store many items in one transaction: all or none."""
        items = list(items)
        statements = [self._upsert_sql(self._row(item), only_if_absent=False) for item in items]
        if not statements:
            return
        if current_transaction.get() is None and not self._triggers:
            await self._db.write_many(statements[0][0], [params for _, params in statements])
            return
        keys = [(params[0], params[1]) for _, params in statements]  # rows begin with pk, sk
        async with self._write(*keys) as tx:
            for item, (sql, params) in zip(items, statements, strict=True):
                await tx.execute(sql, params)
                await self._emit(tx, "put", self._key_value(item), item)

    # -- reads -----------------------------------------------------------------

    async def _fetchall(
        self, sql: str, params: Sequence[Any], keys: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows read in the open transaction (having locked `keys` there), else on their own."""
        joined = current_transaction.get()
        if joined is not None:
            await self._lock(joined, keys)
            return await joined.fetchall(sql, params)
        return await self._db.fetchall(sql, params)

    async def get(self, key: Key) -> Item | None:
        """The item with `key`, or None."""
        pk, sk = self._encode_key(key)
        live, live_params = self._live()
        rows = await self._fetchall(
            f"SELECT doc FROM {self.spec.sql_name} WHERE pk = ? AND sk = ?{live}",
            [pk, sk, *live_params],
            [(pk, sk)],
        )
        return codec.loads(rows[0][0]) if rows else None

    async def batch_get(self, keys: Sequence[Key]) -> list[Item | None]:
        """The items with `keys`, in the same order, None where absent."""
        encoded = [self._encode_key(key) for key in keys]
        found: dict[tuple[str, str], Item] = {}
        live, live_params = self._live()
        for start in range(0, len(encoded), 100):
            chunk = encoded[start : start + 100]
            where = " OR ".join("(pk = ? AND sk = ?)" for _ in chunk)
            params = [value for pair in chunk for value in pair]
            rows = await self._fetchall(
                f"SELECT pk, sk, doc FROM {self.spec.sql_name} WHERE ({where}){live}",
                [*params, *live_params],
                chunk,
            )
            found.update({(pk, sk): codec.loads(doc) for pk, sk, doc in rows})
        return [found.get(pair) for pair in encoded]

    def query_sql(
        self,
        equals: Any,
        *,
        index: str | None = None,
        between: tuple[Any, Any] | None = None,
        begins_with: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> tuple[str, list[Any]]:
        """The SQL and parameters `query` runs (for EXPLAIN and tests)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidItem(f"limit must be 1..{MAX_PAGE}")
        if between is not None and begins_with is not None:
            raise InvalidItem("use between or begins_with, not both")
        if index is None:
            if self.spec.sort_key is None and (between or begins_with):
                raise InvalidItem(f"table {self.name} has no sort key to narrow by")
            hash_column, sort_column, sort_name = "pk", "sk", self.spec.sort_key or ""
            order = ["sk"]
        else:
            spec = self.spec.index(index)
            if spec is None:
                known = ", ".join(ix.name for ix in self.spec.indexes) or "none"
                raise UnknownIndex(f"table {self.name} has no index {index!r}; it has: {known}")
            if spec.sort_field is None and (between or begins_with):
                raise InvalidItem(f"index {index} has no sort field to narrow by")
            hash_column, sort_column, sort_name = (
                spec.column,
                spec.sort_column,
                spec.sort_field or "",
            )
            order = ([spec.sort_column] if spec.sort_field else []) + ["pk", "sk"]
        where = [f"{hash_column} = ?"]
        if index is not None and sort_name:
            where.append(f"{sort_column} IS NOT NULL")  # only items with both fields are in it
        params: list[Any] = [codec.sortable(equals, "the queried value")]
        if between is not None:
            where.append(f"{sort_column} >= ? AND {sort_column} <= ?")
            params += [codec.sortable(between[0], sort_name), codec.sortable(between[1], sort_name)]
        if begins_with is not None:
            low, high = codec.prefix_range(begins_with)
            where.append(f"{sort_column} >= ? AND {sort_column} < ?")
            params += [low, high]
        if cursor is not None:
            comparison = "<" if descending else ">"
            where.append(f"({', '.join(order)}) {comparison} ({', '.join('?' for _ in order)})")
            params += _decode_cursor(cursor, len(order))
        live, live_params = self._live()
        direction = " DESC" if descending else ""
        sql = (
            f"SELECT doc, {', '.join(order)} FROM {self.spec.sql_name} WHERE {' AND '.join(where)}{live} "
            f"ORDER BY {', '.join(c + direction for c in order)} LIMIT ?"
        )
        return sql, [*params, *live_params, limit + 1]

    async def query(
        self,
        equals: Any,
        *,
        index: str | None = None,
        between: tuple[Any, Any] | None = None,
        begins_with: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """Items whose key (or `index` field) equals `equals`, in sort order.

        `between=(low, high)` (inclusive) or `begins_with="prefix"` narrow by
        the sort key (or the index's sort field). Pass `page.cursor` back to
        get the next page.
        """
        sql, params = self.query_sql(
            equals,
            index=index,
            between=between,
            begins_with=begins_with,
            limit=limit,
            cursor=cursor,
            descending=descending,
        )
        rows = await self._fetchall(sql, params)
        return self._page(rows, limit)

    def _page(self, rows: list[tuple[Any, ...]], limit: int) -> Page:
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1][1:]) if more and rows else None
        return Page([codec.loads(row[0]) for row in rows], next_cursor)

    async def scan(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: Mapping[str, Any] | Callable[[Item], bool] | None = None,
    ) -> Page:
        """Up to `limit` items in key order, those matching `filter` (field values or a function).

        The page's cursor is None when no matching item follows it: the scan
        looks one match further, which costs the next call nothing it would
        not have read anyway.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidItem(f"limit must be 1..{MAX_PAGE}")
        position = _decode_cursor(cursor, 2) if cursor else None
        matched: list[Item] = []
        last: list[Any] = []
        live, live_params = self._live()
        while True:
            after = " AND (pk, sk) > (?, ?)" if position else ""
            rows = await self._fetchall(
                f"SELECT doc, pk, sk FROM {self.spec.sql_name} WHERE 1 = 1{after}{live} "
                "ORDER BY pk, sk LIMIT ?",
                [*(position or []), *live_params, MAX_PAGE],
            )
            for doc, pk, sk in rows:
                item = codec.loads(doc)
                if filter is None or (filter(item) if callable(filter) else holds(filter, item)):
                    if len(matched) == limit:  # one more follows the full page
                        return Page(matched, _encode_cursor(last))
                    matched.append(item)
                    last = [pk, sk]
            if len(rows) < MAX_PAGE:
                return Page(matched, None)
            position = [rows[-1][1], rows[-1][2]]


@functools.cache
def _upsert_statement(table: str, columns: tuple[str, ...], only_if_absent: bool) -> str:
    """The INSERT ... ON CONFLICT for a row of `columns`: the same for every put of a table."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("pk", "sk"))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT (pk, sk) DO UPDATE SET {updates}"
    )
    if only_if_absent:
        # An expired row counts as absent; a live one makes this a no-op.
        sql += f" WHERE {table}.expires_at IS NOT NULL AND {table}.expires_at <= ?"
    return sql
