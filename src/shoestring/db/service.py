"""`app.db`: the configured database as a service, and plain-SQL access to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoestring.config import DatabaseSettings
from shoestring.db.database import (
    Database,
    DatabaseError,
    Dialect,
    Params,
    Row,
    Transaction,
    current_transaction,
)
from shoestring.db.migrations import Migration, migrate
from shoestring.services import Health

if TYPE_CHECKING:
    from shoestring.app import App


def open_database(settings: DatabaseSettings, data_dir: Path) -> Database:
    """The backend named by `settings.url` (empty: SQLite in the data directory)."""
    url = settings.url or f"sqlite:///{data_dir / 'shoestring.db'}"
    if url.startswith("sqlite:///"):
        from shoestring.db.sqlite import SQLiteDatabase

        path = Path(url.removeprefix("sqlite:///"))  # made absolute by load_settings
        return SQLiteDatabase(
            path, synchronous=settings.sqlite_synchronous, busy_timeout_ms=settings.busy_timeout_ms
        )
    if url.startswith(("postgresql://", "postgres://")):
        from shoestring.db.postgres import PostgresDatabase

        return PostgresDatabase(url, min_size=settings.pool_min, max_size=settings.pool_max)
    raise DatabaseError(
        f"unsupported database URL scheme in {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql://"
    )


class DatabaseService:
    """The App's database: opened on start, migrated, pinged by `/_ready`."""

    name = "db"

    def __init__(self, app: App) -> None:
        self._app = app
        self._database: Database | None = None
        self._migrations: list[Migration] = []

    @property
    def database(self) -> Database:
        if self._database is None:
            # Read settings only now: the App is declared before the runtime configures it.
            settings = self._app.settings
            self._database = open_database(settings.database, settings.data_dir)
        return self._database

    @property
    def dialect(self) -> Dialect:
        return self.database.dialect

    @property
    def url(self) -> str:
        """The database URL (`sqlite:////abs/path.db` or `postgresql://...`)."""
        return self.database.url

    @property
    def sqlalchemy_url(self) -> str:
        """The same database as an SQLAlchemy URL (psycopg 3 driver for PostgreSQL)."""
        url = self.url
        for scheme in ("postgresql://", "postgres://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url.removeprefix(scheme)
        return url

    def connect(self) -> Any:
        """A new blocking DB-API connection (sqlite3 or psycopg) with shoestring's settings."""
        return self.database.connect()  # type: ignore[attr-defined]

    def add_migrations(self, migrations: Sequence[Migration]) -> None:
        """Register migrations of a component's own tables; applied on start."""
        self._migrations.extend(migrations)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Statements on `tx`, and table writes, jobs and mail queued in the block, commit together."""
        if current_transaction.get() is not None:
            raise DatabaseError(
                "transactions do not nest: this code already runs inside app.db.transaction() "
                "or app.tables.transaction(), whose writes commit together; drop the inner one"
            )
        async with self.database.transaction() as tx:
            token = current_transaction.set(tx)
            try:
                yield tx
            finally:
                current_transaction.reset(token)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self.database.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.database.fetchall(sql, params)

    async def start(self) -> None:
        await self.database.open()
        await migrate(self.database, self._migrations)

    async def stop(self) -> None:
        if self._database is not None:
            await self._database.close()

    async def health(self) -> Health:
        try:
            await self.database.ping()
        except Exception as exc:
            return Health(ok=False, detail=f"database unreachable: {type(exc).__name__}")
        return Health(ok=True)
