"""Errors of document tables.

TableError                  anything the tables API raises on purpose
├── ConditionFailed         a conditional put/update/delete did not hold; nothing changed
├── InvalidItem             the item or key cannot be stored (type, size, missing key)
├── UnknownIndex            `query(index=...)` names an index the table does not have
└── TablesNotStarted        used before the app started (outside handlers, hooks and jobs)
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class TableError(ShoestringError):
    """Base class of document table errors."""


class ConditionFailed(TableError):
    """The write's condition did not hold, so nothing was written."""


class InvalidItem(TableError, ValueError):
    """The item, key or value cannot be stored; the message says which field and why."""


class UnknownIndex(TableError, KeyError):
    """The table has no such index."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown index"


class TablesNotStarted(TableError):
    """Tables are usable once the app has started: in handlers, hooks and jobs."""
