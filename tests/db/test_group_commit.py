"""SQLite commit groups: concurrent transactions share a COMMIT, and none returns before it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shoestring.db import DatabaseError
from shoestring.db.sqlite import SQLiteDatabase

pytestmark = pytest.mark.anyio


async def _database(tmp_path: Path) -> SQLiteDatabase:
    database = SQLiteDatabase(tmp_path / "group.db")
    await database.open()
    await database.write("CREATE TABLE notes (id INTEGER PRIMARY KEY, owner INTEGER)")
    return database


async def test_every_write_is_committed_when_it_returns(tmp_path: Path) -> None:
    database = await _database(tmp_path)
    outsider = sqlite3.connect(tmp_path / "group.db")  # another connection: sees only COMMITs

    async def write(n: int) -> bool:
        await database.write("INSERT INTO notes (id) VALUES (?)", (n,))
        row = outsider.execute("SELECT 1 FROM notes WHERE id = ?", (n,)).fetchone()
        return row is not None

    commits: list[str] = []
    assert database._writer is not None
    database._writer.set_trace_callback(
        lambda sql: commits.append(sql) if sql == "COMMIT" else None
    )
    try:
        seen = await asyncio.gather(*(write(n) for n in range(300)))
        assert all(seen)
        assert 1 <= len(commits) < 300 / 4  # they shared commits
    finally:
        outsider.close()
        await database.close()


async def test_a_failing_transaction_leaves_its_group_intact(tmp_path: Path) -> None:
    database = await _database(tmp_path)

    async def write(n: int) -> None:
        async with database.transaction() as tx:
            await tx.execute("INSERT INTO notes (id) VALUES (?)", (n,))
            await tx.execute("INSERT INTO notes (id) VALUES (?)", (n + 1000,))
            if n % 3 == 0:
                raise ValueError("changed my mind")

    results = await asyncio.gather(*(write(n) for n in range(60)), return_exceptions=True)
    rows = await database.fetchall("SELECT id FROM notes WHERE id < 1000 ORDER BY id")
    await database.close()
    assert [n for n, r in enumerate(results) if isinstance(r, ValueError)] == list(range(0, 60, 3))
    assert [row[0] for row in rows] == [n for n in range(60) if n % 3]


async def test_a_failed_commit_fails_every_member_and_keeps_nothing(tmp_path: Path) -> None:
    """A deferred foreign key is only checked at COMMIT: one bad member sinks its group."""
    database = SQLiteDatabase(tmp_path / "fk.db")
    await database.open()
    await database.write("CREATE TABLE owners (id INTEGER PRIMARY KEY)")
    await database.write(
        "CREATE TABLE pets (id INTEGER PRIMARY KEY, owner INTEGER"
        " REFERENCES owners (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    await database.write("INSERT INTO owners (id) VALUES (1)")

    async def adopt(n: int) -> None:
        await database.write("INSERT INTO pets (id, owner) VALUES (?, ?)", (n, 99 if n == 5 else 1))

    results = await asyncio.gather(*(adopt(n) for n in range(10)), return_exceptions=True)
    rows = await database.fetchall("SELECT id FROM pets ORDER BY id")
    # alone afterwards, a good write commits again
    await adopt(20)
    after = await database.fetchall("SELECT id FROM pets ORDER BY id")
    await database.close()
    failed = {n for n, r in enumerate(results) if isinstance(r, DatabaseError)}
    committed = {row[0] for row in rows}
    assert 5 in failed
    assert not failed & committed  # nobody was told "failed" for a row that is there
    assert failed | committed == set(range(10))  # nor "done" for a row that is not
    assert {row[0] for row in after} == committed | {20}


async def test_a_failing_single_write_fails_alone(tmp_path: Path) -> None:
    """A statement that breaks a constraint is refused; the writes beside it commit."""
    database = await _database(tmp_path)
    await database.write("INSERT INTO notes (id) VALUES (7)")

    async def write(n: int) -> int:
        return await database.write("INSERT INTO notes (id) VALUES (?)", (n,))

    results = await asyncio.gather(*(write(n) for n in range(20)), return_exceptions=True)
    rows = await database.fetchall("SELECT id FROM notes ORDER BY id")
    await database.close()
    assert isinstance(results[7], sqlite3.IntegrityError)
    assert [n for n, r in enumerate(results) if r == 1] == [n for n in range(20) if n != 7]
    assert [row[0] for row in rows] == list(range(20))


async def test_write_returning_counts_atomically(tmp_path: Path) -> None:
    database = await _database(tmp_path)
    await database.write("CREATE TABLE hits (name TEXT PRIMARY KEY, count INTEGER NOT NULL)")
    upsert = (
        "INSERT INTO hits (name, count) VALUES (?, 1)"
        " ON CONFLICT (name) DO UPDATE SET count = count + 1 RETURNING count"
    )
    rows = await asyncio.gather(*(database.write_returning(upsert, ("a",)) for _ in range(50)))
    counts = sorted(row[0] for (row,) in rows)
    outsider = sqlite3.connect(tmp_path / "group.db")
    stored = outsider.execute("SELECT count FROM hits").fetchone()
    outsider.close()
    await database.close()
    assert counts == list(range(1, 51))
    assert stored == (50,)


async def test_a_write_that_need_not_be_durable_commits_with_the_next(tmp_path: Path) -> None:
    database = await _database(tmp_path)
    outsider = sqlite3.connect(tmp_path / "group.db")
    try:
        insert = "INSERT INTO notes (id) VALUES (?) RETURNING id"
        assert await database.write_returning(insert, (1,), durable=False) == [(1,)]
        await database.write("INSERT INTO notes (id) VALUES (2)")
        # the durable write's return means both are on disk
        assert outsider.execute("SELECT id FROM notes ORDER BY id").fetchall() == [(1,), (2,)]

        # alone, it is committed a moment later without another write
        await database.write_returning(insert, (3,), durable=False)
        for _ in range(200):
            if outsider.execute("SELECT 1 FROM notes WHERE id = 3").fetchone():
                break
            await asyncio.sleep(0.01)
        assert outsider.execute("SELECT 1 FROM notes WHERE id = 3").fetchone() == (1,)
    finally:
        outsider.close()
        await database.close()


async def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    database = await _database(tmp_path)
    insert = "INSERT INTO notes (id) VALUES (?)"
    await database.write_batch([(insert, (1,)), (insert, (2,))])
    with pytest.raises(sqlite3.IntegrityError):
        await database.write_batch([(insert, (3,)), (insert, (1,))])  # 1 is taken
    rows = await database.fetchall("SELECT id FROM notes ORDER BY id")
    await database.close()
    assert rows == [(1,), (2,)]


async def test_cancelled_transactions_leave_nothing_and_the_rest_commit(tmp_path: Path) -> None:
    # A request whose client hangs up is cancelled wherever it is: a statement
    # may be waiting for the writer thread, running, or done.
    database = await _database(tmp_path)

    async def write(n: int) -> None:
        async with database.transaction() as tx:
            await tx.execute("INSERT INTO notes (id) VALUES (?)", (n,))
            await tx.execute("INSERT INTO notes (id) VALUES (?)", (n + 1000,))

    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(write(n)) for n in range(400)]
    for n, task in enumerate(tasks):
        if n % 2:  # at moments spread over the run: each lands at some stage of some write
            loop.call_later(n / 400 * 0.2, task.cancel)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ids = {r[0] for r in await database.fetchall("SELECT id FROM notes")}
    await database.write("INSERT INTO notes (id) VALUES (5000)")  # the writer is still sound
    await database.close()
    finished = {n for n, result in enumerate(results) if result is None}
    assert 0 < len(finished) < 400
    # Each transaction is all or nothing: one cancelled after its COMMIT began
    # may be kept (the caller just never heard), one cancelled before is not.
    kept = {n for n in range(400) if n in ids}
    assert ids == kept | {n + 1000 for n in kept}
    assert finished <= kept and len(kept) < 400  # and some cancellations came in time
    again = sqlite3.connect(tmp_path / "group.db")
    assert again.execute("SELECT count(*) FROM notes").fetchone() == (len(ids) + 1,)
    again.close()
