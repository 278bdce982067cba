"""The database layer: migrations, plain SQL through app.db, durability settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoestring.db.migrations import Migration, migrate
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


MIGRATIONS = [
    Migration("widgets", 1, ["CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"]),
    Migration("widgets", 2, ["ALTER TABLE widgets ADD COLUMN colour TEXT"]),
]


async def test_migrations_apply_once_in_order(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    app.db.add_migrations(MIGRATIONS)
    async with running(app):
        async with app.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO widgets (id, name, colour) VALUES (?, ?, ?)", (1, "cog", "red")
            )
        assert await migrate(app.db.database, MIGRATIONS) == {"widgets": 2}
        assert await app.db.fetchall("SELECT name, colour FROM widgets") == [("cog", "red")]


async def test_concurrent_migrators_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    apps = [make_app(database_url, tmp_path) for _ in range(3)]
    for app in apps:
        app.db.add_migrations(MIGRATIONS)
    if apps[0].db.dialect == "sqlite":
        for app in apps:  # several processes' worth of connections on one file
            await app.db.database.open()
        await asyncio.gather(*(migrate(app.db.database, MIGRATIONS) for app in apps))
    else:
        await asyncio.gather(*(app.db.start() for app in apps))
    row = await apps[0].db.fetchone(
        "SELECT version FROM shoestring_schema WHERE component = 'widgets'"
    )
    assert row == (2,)
    for app in apps:
        await app.db.stop()


async def test_a_failed_transaction_changes_nothing(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    app.db.add_migrations(MIGRATIONS)
    async with running(app):
        with pytest.raises(RuntimeError):
            async with app.db.transaction() as tx:
                await tx.execute("INSERT INTO widgets (id, name) VALUES (?, ?)", (1, "cog"))
                raise RuntimeError("handler failed")
        assert await app.db.fetchall("SELECT * FROM widgets") == []


async def test_plain_sql_users_get_a_url_and_a_connection(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    app.db.add_migrations(MIGRATIONS)
    async with running(app):
        connection = app.db.connect()
        try:
            connection.execute("INSERT INTO widgets (id, name) VALUES (7, 'raw')")
            connection.commit()
        finally:
            connection.close()
        assert await app.db.fetchone("SELECT name FROM widgets WHERE id = 7") == ("raw",)
        if app.db.dialect == "postgresql":
            assert app.db.sqlalchemy_url.startswith("postgresql+psycopg://")
        else:
            assert app.db.sqlalchemy_url == f"sqlite:///{tmp_path / 'test.db'}"


async def test_sqlite_is_durable_by_default(tmp_path: Path) -> None:
    app = make_app("", tmp_path)
    async with running(app):
        rows = await app.db.fetchall("PRAGMA journal_mode")
        assert rows == [("wal",)]
        connection = app.db.connect()
        try:
            assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
            assert connection.execute("PRAGMA foreign_keys").fetchone() == (1,)
        finally:
            connection.close()
        assert Path(app.db.url.removeprefix("sqlite:///")) == tmp_path / "data" / "shoestring.db"


async def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    from shoestring.db import DatabaseError

    app = make_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", tmp_path)
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        await app.db.start()


async def test_a_deleted_row_leaves_no_copy_in_the_files_soon_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A delivered mail's body is deleted; a copy of the data directory taken a
    # little later must not hold it, in the database file or in its WAL.
    monkeypatch.setattr("shoestring.db.sqlite.CHECKPOINT_INTERVAL", 0.2)
    app = make_app(f"sqlite:///{tmp_path / 'app.db'}", tmp_path)
    app.db.add_migrations(MIGRATIONS)
    secret = "BODY-OF-A-DELIVERED-MAIL-" + "x" * 200
    async with running(app):
        async with app.db.transaction() as tx:
            await tx.execute("INSERT INTO widgets (id, name) VALUES (1, ?)", [secret])
        async with app.db.transaction() as tx:
            await tx.execute("DELETE FROM widgets WHERE id = 1")
        files = [tmp_path / "app.db", tmp_path / "app.db-wal"]
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not any(secret.encode() in path.read_bytes() for path in files if path.exists()):
                break
        assert not any(secret.encode() in path.read_bytes() for path in files if path.exists())
        await app.db.fetchall("SELECT 1")  # and the database still works
