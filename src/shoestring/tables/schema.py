"""How a document table maps onto SQL: one physical table per document table.

    tbl_<name>(pk, sk, doc, expires_at, ix_<id>, ixs_<id>, ...)

`pk`/`sk` hold the encoded key and sort key (codec.sortable), `doc` the JSON
item. Each index adds one column per field, filled by shoestring on every
write (so both backends index identically and a query is a plain B-tree
search), and a B-tree over (index value, index sort value, pk, sk).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

from shoestring.db.database import Dialect
from shoestring.db.migrations import Migration

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_FIELD = re.compile(r"^[A-Za-z_][\w.-]{0,63}$")


@functools.cache
def _column(index_name: str) -> str:
    """The column an index keeps its values in: named by hash, so any field name fits."""
    return "ix_" + hashlib.sha256(index_name.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class IndexSpec:
    field: str
    sort_field: str | None = None

    @property
    def name(self) -> str:
        return f"{self.field}/{self.sort_field}" if self.sort_field else self.field

    @property
    def column(self) -> str:
        return _column(self.name)

    @property
    def sort_column(self) -> str:
        return "ixs_" + self.column.removeprefix("ix_")

    @classmethod
    def parse(cls, spec: str | tuple[str, str]) -> IndexSpec:
        sort_field: str | None
        if isinstance(spec, tuple):
            field_name, sort_field = spec
        else:
            field_name, _, rest = spec.partition("/")
            sort_field = rest or None
        for name in (field_name, sort_field):
            if name is not None and not _FIELD.match(name):
                raise ValueError(f"index field {name!r} must be a field name like 'owner'")
        return cls(field_name, sort_field)


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    key: str = "id"
    sort_key: str | None = None
    indexes: tuple[IndexSpec, ...] = field(default=())
    ttl: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"table name {self.name!r} must be 1-48 lowercase letters, digits or '_', "
                "starting with a letter"
            )

    @property
    def sql_name(self) -> str:
        return f'"tbl_{self.name}"'

    def index(self, name: str) -> IndexSpec | None:
        return next((ix for ix in self.indexes if ix.name == name), None)


def text_type(dialect: Dialect) -> str:
    # Byte order on both backends, so encoded values sort the same everywhere.
    return 'TEXT COLLATE "C"' if dialect == "postgresql" else "TEXT"


def create_table_sql(spec: TableSpec, dialect: Dialect) -> str:
    text = text_type(dialect)
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    suffix = " WITHOUT ROWID" if dialect == "sqlite" else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {spec.sql_name} (pk {text} NOT NULL, sk {text} NOT NULL, "
        f"doc TEXT NOT NULL, expires_at {real}, PRIMARY KEY (pk, sk)){suffix}"
    )


def index_sql(spec: TableSpec, index: IndexSpec, dialect: Dialect) -> list[str]:
    text = text_type(dialect)
    columns = [index.column] + ([index.sort_column] if index.sort_field else [])
    statements = [f"ALTER TABLE {spec.sql_name} ADD COLUMN {c} {text}" for c in columns]
    statements.append(
        f'CREATE INDEX IF NOT EXISTS "tbl_{spec.name}__{index.column}" '
        f"ON {spec.sql_name} ({', '.join(columns)}, pk, sk)"
    )
    return statements


def columns_sql(spec: TableSpec, dialect: Dialect) -> str:
    if dialect == "sqlite":
        return f"SELECT name FROM pragma_table_info('tbl_{spec.name}')"
    return (
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = current_schema() AND table_name = 'tbl_{spec.name}'"
    )


MIGRATIONS = [
    Migration(
        "tables",
        1,
        [
            "CREATE TABLE shoestring_tables (name TEXT PRIMARY KEY, key TEXT NOT NULL, "
            "sort_key TEXT NOT NULL DEFAULT '')"
        ],
    ),
    # The TTL field each table's expiry times were computed from ('' for none;
    # NULL: not known, for tables made before it was kept).
    Migration("tables", 2, ["ALTER TABLE shoestring_tables ADD COLUMN ttl TEXT"]),
]
