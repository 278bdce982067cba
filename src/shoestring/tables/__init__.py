"""Document tables: schemaless items with keys, indexes, conditions and TTL."""

from shoestring.tables.errors import (
    ConditionFailed,
    InvalidItem,
    TableError,
    TablesNotStarted,
    UnknownIndex,
)
from shoestring.tables.service import Tables
from shoestring.tables.table import MISSING, Page, Table

__all__ = [
    "MISSING",
    "ConditionFailed",
    "InvalidItem",
    "Page",
    "Table",
    "TableError",
    "Tables",
    "TablesNotStarted",
    "UnknownIndex",
]
