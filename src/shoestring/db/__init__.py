"""The database under shoestring's services: SQLite embedded, PostgreSQL scale-out.

`open_database(url)` picks the backend from the URL. Both give the same small
async interface (`Database`): transactions, reads, and versioned migrations
for shoestring's own tables. Plain-SQL users reach it through `app.db`.
"""

from shoestring.db.database import Database, DatabaseError, Transaction, TransactionConflict
from shoestring.db.service import DatabaseService, open_database

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseService",
    "Transaction",
    "TransactionConflict",
    "open_database",
]
