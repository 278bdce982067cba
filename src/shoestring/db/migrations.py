"""Versioned migrations of shoestring's own tables (jobs, outbox, table catalogue...).

Each component owns a numbered list of migrations; `shoestring_schema`
records how far each component got. Applying is serialised across processes
(an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) and each
migration commits with its version bump, so a crash never half-applies one.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shoestring.db.database import Database, Dialect, Transaction


@dataclass(frozen=True, slots=True)
class Migration:
    component: str
    version: int
    statements: Sequence[str] = ()
    # Statements that differ by dialect replace `statements` for that dialect.
    by_dialect: Mapping[Dialect, Sequence[str]] = field(default_factory=dict)

    def sql(self, dialect: Dialect) -> Sequence[str]:
        return self.by_dialect.get(dialect, self.statements)


MIGRATION_LOCK = zlib.crc32(b"shoestring_schema")


async def lock_schema(database: Database, tx: Transaction) -> None:
    """Hold, until `tx` ends, the lock every process takes before changing the schema.

    Even `CREATE ... IF NOT EXISTS` races between processes on PostgreSQL
    (both see no table; the second fails on a unique index). SQLite's
    BEGIN IMMEDIATE already makes the transaction the only writer.
    """
    if database.dialect == "postgresql":
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))


SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS shoestring_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)"""


async def migrate(database: Database, migrations: Sequence[Migration]) -> dict[str, int]:
    """Apply pending migrations; return each component's version afterwards."""
    async with database.transaction() as tx:
        await lock_schema(database, tx)
        await tx.execute(SCHEMA_TABLE)
    versions: dict[str, int] = {}
    for component in dict.fromkeys(m.component for m in migrations):
        own = sorted((m for m in migrations if m.component == component), key=lambda m: m.version)
        for migration in own:
            async with database.transaction() as tx:
                await lock_schema(database, tx)
                row = await tx.fetchone(
                    "SELECT version FROM shoestring_schema WHERE component = ?", (component,)
                )
                current = row[0] if row else 0
                if migration.version <= current:
                    continue
                for statement in migration.sql(database.dialect):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO shoestring_schema (component, version) VALUES (?, ?) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (component, migration.version),
                )
        row = await database.fetchone(
            "SELECT version FROM shoestring_schema WHERE component = ?", (component,)
        )
        versions[component] = row[0] if row else 0
    return versions
