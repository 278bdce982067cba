"""What tables promise under concurrency and change, the same on SQLite and PostgreSQL.

Transactions that read and write the same items, the background reaper
racing a refresh, plain-SQL and table writes in one transaction, and a table
whose TTL field or indexes change between starts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shoestring.db import DatabaseError, TransactionConflict
from shoestring.db.migrations import Migration
from shoestring.tables import ConditionFailed, InvalidItem, TableError
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def test_read_modify_write_in_transactions_loses_no_update(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    counters = app.table("counters")

    async def add_one(key: str) -> None:
        async with app.tables.transaction():
            current = await counters.get(key)
            await asyncio.sleep(0)  # let the others read meanwhile, if they can
            await counters.put({"id": key, "n": (current or {"n": 0})["n"] + 1})

    async with running(app):
        await counters.put({"id": "seen", "n": 0})
        # "seen" exists; "fresh" does not until the first transaction makes it
        await asyncio.gather(*(add_one(key) for key in ["seen", "fresh"] * 20))
        assert await counters.get("seen") == {"id": "seen", "n": 20}
        assert await counters.get("fresh") == {"id": "fresh", "n": 20}


async def test_transactions_locking_in_opposite_orders_end_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    accounts = app.table("accounts")

    async def transfer(source: str, target: str, both_hold_one: asyncio.Barrier) -> None:
        async with app.tables.transaction():
            await accounts.update(source, increment={"balance": -1})
            if database_url.startswith("postgresql"):
                await both_hold_one.wait()  # SQLite runs one transaction at a time
            await accounts.update(target, increment={"balance": 1})

    async with running(app):
        await accounts.batch_put([{"id": "a", "balance": 10}, {"id": "b", "balance": 10}])
        barrier = asyncio.Barrier(2)
        results = await asyncio.wait_for(
            asyncio.gather(
                transfer("a", "b", barrier), transfer("b", "a", barrier), return_exceptions=True
            ),
            30,
        )
        failed = [r for r in results if r is not None]
        # Either both ran one after the other, or the database broke the deadlock by
        # rolling one back, which the app sees as TransactionConflict, not a driver error.
        assert all(isinstance(r, TransactionConflict) for r in failed), results
        assert len(failed) == (1 if database_url.startswith("postgresql") else 0)
        balances = [(await accounts.get(k) or {})["balance"] for k in "ab"]
        assert sum(balances) == 20  # all or nothing of each transfer
        if not failed:
            assert balances == [10, 10]


async def test_the_reaper_keeps_an_item_refreshed_while_it_runs(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    sessions = app.table("sessions", ttl="expires")
    async with running(app):
        await sessions.put({"id": "s", "expires": time.time() + 0.2})
        await asyncio.sleep(0.3)
        reaped: asyncio.Task[int] | None = None
        async with app.tables.transaction():
            await sessions.update("s", set={"expires": time.time() + 3600})
            # the reaper starts while the refresh is not yet committed
            reaped = asyncio.create_task(app.tables.reap_expired())
            await asyncio.sleep(0.3)
        assert await reaped == 0
        assert (await sessions.get("s") or {}).get("expires", 0) > time.time()


async def test_plain_sql_and_table_writes_commit_together(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes")
    app.db.add_migrations([_visits_migration()])
    async with running(app):
        async with asyncio.timeout(10), app.db.transaction() as tx:
            await tx.execute("INSERT INTO visits (path) VALUES (?)", ["/kept"])
            await notes.put({"id": "kept"})
        with pytest.raises(RuntimeError):
            async with asyncio.timeout(10), app.db.transaction() as tx:
                await tx.execute("INSERT INTO visits (path) VALUES (?)", ["/undone"])
                await notes.put({"id": "undone"})
                raise RuntimeError("the handler failed")
        assert await app.db.fetchall("SELECT path FROM visits") == [("/kept",)]
        assert await notes.get("kept") == {"id": "kept"}
        assert await notes.get("undone") is None
        # a transaction inside another is an error at once, never a wait on itself
        with pytest.raises(DatabaseError, match="do not nest"):
            async with asyncio.timeout(10), app.tables.transaction(), app.db.transaction():
                pass
        with pytest.raises(DatabaseError, match="do not nest"):
            async with asyncio.timeout(10), app.db.transaction(), app.tables.transaction():
                pass


def _visits_migration() -> Migration:
    return Migration("visits", 1, ["CREATE TABLE visits (path TEXT NOT NULL)"])


async def test_a_changed_ttl_field_decides_expiry_from_the_next_start(
    database_url: str, tmp_path: Path
) -> None:
    past, future = time.time() - 60, time.time() + 3600
    first = make_app(database_url, tmp_path)
    tokens = first.table("tokens", ttl="expires")
    plain = first.table("plain")
    async with running(first):
        await tokens.put({"id": "t", "expires": past, "valid_until": future})
        await plain.put({"id": "old", "until": past})
        await plain.put({"id": "new", "until": future})
        assert await tokens.get("t") is None  # expired by its old TTL field

    second = make_app(database_url, tmp_path)
    tokens = second.table("tokens", ttl="valid_until")
    plain = second.table("plain", ttl="until")
    async with running(second):
        assert (await tokens.get("t") or {}).get("valid_until") == future
        assert await plain.get("old") is None  # past its time under the new TTL
        assert await plain.get("new") is not None
        assert await second.tables.reap_expired() == 1
        await tokens.put({"id": "w", "valid_until": past})
        assert await tokens.get("w") is None

    third = make_app(database_url, tmp_path)
    tokens = third.table("tokens")  # no TTL any more: nothing expires
    async with running(third):
        assert await tokens.get("w") == {"id": "w", "valid_until": past}
        with pytest.raises(ConditionFailed):
            await tokens.put({"id": "w"}, if_not_exists=True)


async def test_an_index_that_cannot_hold_an_existing_item_names_it(
    database_url: str, tmp_path: Path
) -> None:
    first = make_app(database_url, tmp_path)
    notes = first.table("notes")
    async with running(first):
        await notes.put({"id": "fine", "owner": "ada"})
        await notes.put({"id": "odd", "owner": True})

    second = make_app(database_url, tmp_path)
    second.table("notes", indexes=["owner"])
    with pytest.raises(TableError) as refused:
        async with running(second):
            pass
    assert "'id': 'odd'" in str(refused.value) and "bool" in str(refused.value)

    third = make_app(database_url, tmp_path)
    notes = third.table("notes")
    async with running(third):  # the table is as it was
        assert await notes.get("odd") == {"id": "odd", "owner": True}


async def test_a_composite_index_holds_only_items_with_both_fields(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes", indexes=[("owner", "created")])
    async with running(app):
        await notes.batch_put(
            [
                {"id": "1", "owner": "ada", "created": 2},
                {"id": "2", "owner": "ada"},
                {"id": "3", "owner": "ada", "created": 1},
                {"id": "4", "owner": "ada", "created": None},
            ]
        )
        seen, cursor = [], None
        while True:
            page = await notes.query("ada", index="owner/created", limit=1, cursor=cursor)
            seen += [item["id"] for item in page.items]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == ["3", "1"]


async def test_updates_never_overwrite_what_a_path_goes_through(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    pages = app.table("pages")
    async with running(app):
        await pages.put({"id": "p", "stats": 5, "active": 1})
        with pytest.raises(InvalidItem, match="stats holds a int"):
            await pages.update("p", set={"stats.views": 1})
        for amount in ["1", True, None]:
            with pytest.raises(InvalidItem, match="must be a number"):
                await pages.update("p", increment={"views": amount})  # type: ignore[dict-item]
        assert await pages.get("p") == {"id": "p", "stats": 5, "active": 1}
        assert await pages.update("p", set={"meta.views": 1}) == {
            "id": "p", "stats": 5, "active": 1, "meta": {"views": 1},
        }  # fmt: skip


async def test_conditions_and_filters_tell_booleans_from_numbers(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    users = app.table("users")
    async with running(app):
        await users.batch_put(
            [{"id": "a", "admin": True}, {"id": "b", "admin": 1}, {"id": "c", "admin": [1.0]}]
        )
        page = await users.scan(filter={"admin": True})
        assert [item["id"] for item in page.items] == ["a"]
        assert [item["id"] for item in (await users.scan(filter={"admin": 1.0})).items] == ["b"]
        assert [item["id"] for item in (await users.scan(filter={"admin": [1]})).items] == ["c"]
        with pytest.raises(ConditionFailed):
            await users.put({"id": "b", "admin": False}, condition={"admin": True})
        assert await users.get("b") == {"id": "b", "admin": 1}
