"""The tables API, every case on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shoestring import MISSING, ConditionFailed
from shoestring.tables import InvalidItem, TableError, TablesNotStarted, UnknownIndex
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def test_items_round_trip_exactly(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes")
    item = {
        "id": "n1",
        "text": "héllo ✓ \x00 end",
        "n": 2**53,
        "f": 0.1,
        "ok": False,
        "none": None,
        "list": [1, "two", [3.5], {"four": 4}],
        "nested": {"deep": {"deeper": True}},
        "blob": b"\x00\xff binary",
        "when": datetime(2026, 11, 24, 7, 30, 1, 123456, tzinfo=UTC),
        "local": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
        "naive": datetime(2020, 2, 29, 12, 0),
        "$bytes": "a user's own dollar key",
        "tagged": {"$datetime": "not a date"},
    }
    async with running(app):
        await notes.put(item)
        assert await notes.get("n1") == item
        assert await notes.get("missing") is None


async def test_if_not_exists_and_conditions(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    accounts = app.table("accounts")
    async with running(app):
        await accounts.put({"id": "a", "version": 1}, if_not_exists=True)
        with pytest.raises(ConditionFailed):
            await accounts.put({"id": "a", "version": 99}, if_not_exists=True)
        with pytest.raises(ConditionFailed):
            await accounts.put({"id": "a", "version": 2}, condition={"version": 5})
        await accounts.put({"id": "a", "version": 2}, condition={"version": 1})
        with pytest.raises(ConditionFailed):
            await accounts.put({"id": "a", "x": 1}, condition={"version": MISSING})
        await accounts.put({"id": "b"}, condition=lambda current: current is None)
        assert await accounts.get("a") == {"id": "a", "version": 2}
        assert await accounts.get("b") == {"id": "b"}


async def test_update_sets_increments_removes_and_upserts(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    pages = app.table("pages")
    async with running(app):
        created = await pages.update("home", increment={"views": 1}, set={"stats.last": "x"})
        assert created == {"id": "home", "views": 1, "stats": {"last": "x"}}
        await pages.update("home", increment={"views": 2, "stats.hits": 1}, remove=["stats.last"])
        assert await pages.get("home") == {"id": "home", "views": 3, "stats": {"hits": 1}}
        with pytest.raises(ConditionFailed):
            await pages.update("home", set={"views": 0}, condition={"views": 1})
        with pytest.raises(InvalidItem, match="cannot increment stats"):
            await pages.update("home", increment={"stats": 1})
        assert (await pages.get("home"))["views"] == 3


async def test_delete_with_condition(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    sessions = app.table("sessions")
    async with running(app):
        await sessions.put({"id": "s", "owner": "ada"})
        with pytest.raises(ConditionFailed):
            await sessions.delete("s", condition={"owner": "bob"})
        assert await sessions.delete("s", condition={"owner": "ada"}) is True
        assert await sessions.delete("s") is False


async def test_query_by_sort_key_pages_and_orders(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    events = app.table("events", key="stream", sort_key="seq")
    async with running(app):
        await events.batch_put({"stream": "s1", "seq": n, "v": n} for n in [-5, 0, 2, 10, 11, 300])
        await events.batch_put({"stream": "s2", "seq": n} for n in range(3))
        page = await events.query("s1", between=(0, 11))
        assert [i["seq"] for i in page.items] == [0, 2, 10, 11]  # numeric, not lexical, order
        backwards = await events.query("s1", descending=True, limit=2)
        assert [i["seq"] for i in backwards.items] == [300, 11]
        seen, cursor = [], None
        while True:
            page = await events.query("s1", limit=4, cursor=cursor)
            seen += [i["seq"] for i in page.items]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == [-5, 0, 2, 10, 11, 300]


async def test_begins_with_on_string_sort_keys(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    files = app.table("files", key="owner", sort_key="path")
    async with running(app):
        for path in ["a/1", "a/2", "a", "ab/1", "b/1", "a/ü"]:
            await files.put({"owner": "x", "path": path})
        page = await files.query("x", begins_with="a/")
        assert [i["path"] for i in page.items] == ["a/1", "a/2", "a/ü"]


async def test_query_by_index_is_sparse_and_sorted(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes", indexes=["owner", ("owner", "created")])
    async with running(app):
        await notes.batch_put(
            [
                {"id": "1", "owner": "ada", "created": 30},
                {"id": "2", "owner": "ada", "created": 10},
                {"id": "3", "owner": "bob", "created": 20},
                {"id": "4", "created": 5},  # no owner: not in the index
            ]
        )
        assert {i["id"] for i in (await notes.query("ada", index="owner")).items} == {"1", "2"}
        by_date = await notes.query("ada", index="owner/created", between=(0, 100))
        assert [i["id"] for i in by_date.items] == ["2", "1"]
        assert (await notes.query("nobody", index="owner")).items == []
        await notes.update("2", set={"owner": "bob"})
        assert {i["id"] for i in (await notes.query("bob", index="owner")).items} == {"2", "3"}
        with pytest.raises(UnknownIndex, match="has no index 'colour'"):
            await notes.query("x", index="colour")


async def test_a_new_index_is_back_filled_on_start(database_url: str, tmp_path: Path) -> None:
    first = make_app(database_url, tmp_path)
    plain = first.table("notes")
    async with running(first):
        await plain.batch_put(
            {"id": str(n), "tag": "even" if n % 2 == 0 else "odd"} for n in range(2500)
        )
    second = make_app(database_url, tmp_path)
    indexed = second.table("notes", indexes=["tag"])
    async with running(second):
        page = await indexed.query("even", index="tag", limit=1000)
        assert len(page.items) == 1000
        total, cursor = 0, None
        while True:
            page = await indexed.query("odd", index="tag", limit=1000, cursor=cursor)
            total += len(page.items)
            if not (cursor := page.cursor):
                break
        assert total == 1250


async def test_indexes_declared_in_config(database_url: str, tmp_path: Path) -> None:
    from shoestring.config import TableSettings

    app = make_app(database_url, tmp_path, tables={"users": TableSettings(indexes=["country"])})
    users = app.table("users")
    async with running(app):
        await users.put({"id": "u1", "country": "NZ"})
        assert [u["id"] for u in (await users.query("NZ", index="country")).items] == ["u1"]


async def test_scan_filters_and_pages(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    items = app.table("items", key="n")
    async with running(app):
        await items.batch_put({"n": n, "even": n % 2 == 0} for n in range(25))
        seen, cursor = [], None
        while True:
            page = await items.scan(limit=5, cursor=cursor, filter={"even": True})
            seen += [i["n"] for i in page.items]
            if not (cursor := page.cursor):
                break
        assert seen == list(range(0, 25, 2))
        odd = await items.scan(limit=100, filter=lambda i: i["n"] % 2 == 1)
        assert len(odd.items) == 12


async def test_the_last_page_has_no_cursor_even_when_it_is_full(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    items = app.table("items", key="n")
    async with running(app):
        await items.batch_put({"n": n, "even": n % 2 == 0} for n in range(20))
        pages = []
        for filter in (None, {"even": True}):
            page = await items.scan(limit=5, filter=filter)
            sizes = [len(page.items)]
            while page.cursor:
                page = await items.scan(limit=5, cursor=page.cursor, filter=filter)
                sizes.append(len(page.items))
            pages.append(sizes)
    # 20 items and 10 even ones: exactly full pages, and no empty page after them.
    assert pages == [[5, 5, 5, 5], [5, 5]]


async def test_batch_get_keeps_order_and_batch_put_is_all_or_nothing(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    things = app.table("things")
    async with running(app):
        await things.batch_put([{"id": "a"}, {"id": "b"}])
        assert await things.batch_get(["b", "zz", "a"]) == [{"id": "b"}, None, {"id": "a"}]
        with pytest.raises(InvalidItem):
            await things.batch_put([{"id": "c"}, {"no_key": 1}])
        assert await things.get("c") is None


async def test_transactions_span_tables_and_roll_back_together(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    orders = app.table("orders")
    stock = app.table("stock")
    async with running(app):
        await stock.put({"id": "widget", "left": 1})
        async with app.tables.transaction():
            await stock.update("widget", increment={"left": -1}, condition=lambda s: s["left"] > 0)
            await orders.put({"id": "o1", "item": "widget"})
        with pytest.raises(ConditionFailed):
            async with app.tables.transaction():
                await orders.put({"id": "o2", "item": "widget"})
                await stock.update(
                    "widget", increment={"left": -1}, condition=lambda s: s["left"] > 0
                )
        assert await orders.get("o2") is None
        assert (await stock.get("widget"))["left"] == 0
        assert await orders.get("o1") == {"id": "o1", "item": "widget"}


async def test_expired_items_vanish_at_once_and_are_reaped(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    codes = app.table("codes", ttl="expires")
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with running(app):
        await codes.put({"id": "old", "expires": past})
        await codes.put({"id": "new", "expires": datetime.now(UTC) + timedelta(hours=1)})
        await codes.put({"id": "forever"})
        assert await codes.get("old") is None
        assert {c["id"] for c in (await codes.scan()).items} == {"new", "forever"}
        await codes.put({"id": "old", "expires": None}, if_not_exists=True)  # expired = absent
        await codes.put({"id": "gone", "expires": past.timestamp()})
        assert await app.tables.reap_expired() == 1
        row = await app.db.fetchone('SELECT count(*) FROM "tbl_codes"')
        assert row is not None and row[0] == 3


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"text": "no id"}, "has no 'id'"),
        ({"id": "x", "when": {1, 2}}, r"item\.when is a set"),
        ({"id": "x", "n": float("nan")}, "finite"),
        ({"id": "x", "a": [1, {"b": float("inf")}]}, r"item\.a\[1\]\.b is inf"),
        ({"id": True}, "bool"),
        ({"id": {"a": 1}}, "keys and indexed values"),
        ({"id": "x", "d": {1: "int key"}}, "dict keys must be str"),
        ({"id": "x", "big": "x" * 500_000}, "the limit is"),
        ({"id": "x", "big": "é" * 210_000}, "item is 420"),  # 2 bytes a character
    ],
)
async def test_bad_items_are_refused_with_a_clear_error(
    database_url: str, tmp_path: Path, item: dict[str, object], message: str
) -> None:
    app = make_app(database_url, tmp_path)
    things = app.table("things")
    async with running(app):
        with pytest.raises(InvalidItem, match=message):
            await things.put(item)
        assert (await things.scan()).items == []


async def test_tampered_cursor_is_refused(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    things = app.table("things")
    async with running(app):
        with pytest.raises(InvalidItem, match="cursor"):
            await things.scan(cursor="bm90IGEgY3Vyc29y")


async def test_fifty_racing_conditional_writers_exactly_one_wins(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    seats = app.table("seats")
    async with running(app):
        await seats.put({"id": "12A", "holder": None})

        async def claim(who: int) -> bool:
            try:
                await seats.update("12A", set={"holder": who}, condition={"holder": None})
            except ConditionFailed:
                return False
            return True

        results = await asyncio.gather(*(claim(n) for n in range(50)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert (await seats.get("12A"))["holder"] == winner

        async def create(who: int) -> bool:
            try:
                await seats.put({"id": "new", "by": who}, if_not_exists=True)
            except ConditionFailed:
                return False
            return True

        assert (await asyncio.gather(*(create(n) for n in range(50)))).count(True) == 1


async def test_concurrent_increments_are_not_lost(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    counters = app.table("counters")
    async with running(app):
        await asyncio.gather(*(counters.update("c", increment={"n": 1}) for _ in range(40)))
        assert (await counters.get("c"))["n"] == 40


async def test_changing_a_tables_key_is_refused(database_url: str, tmp_path: Path) -> None:
    first = make_app(database_url, tmp_path)
    first.table("users", key="id")
    async with running(first):
        pass
    second = make_app(database_url, tmp_path)
    second.table("users", key="email_hash")
    with pytest.raises(TableError, match="Keys cannot change in place"):
        async with running(second):
            pass


async def test_using_a_table_before_start_says_so(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes")
    with pytest.raises(TablesNotStarted, match="once the app has started"):
        await notes.get("x")


async def test_nodes_starting_together_create_each_table_once(
    database_url: str, tmp_path: Path
) -> None:
    apps = [make_app(database_url, tmp_path / f"node{n}") for n in range(6)]
    for app in apps:
        app.table("shared", indexes=["owner"])

    async def start_then_write(n: int) -> None:
        async with running(apps[n]):
            await apps[n].tables["shared"].put({"id": f"from-{n}", "owner": "ada"})

    await asyncio.gather(*(start_then_write(n) for n in range(len(apps))))
    reader = make_app(database_url, tmp_path / "reader")
    reader.table("shared", indexes=["owner"])
    async with running(reader):
        page = await reader.tables["shared"].query("ada", index="owner")
    assert sorted(item["id"] for item in page.items) == [f"from-{n}" for n in range(6)]
