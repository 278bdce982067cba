"""`app.codes`: one-time codes sent to people (by mail) to prove they read it.

    async with app.tables.transaction():      # the code exists if and only if its mail is queued
        code = await app.codes.issue("signin", address)
        await app.mail.send_template("signin", to=address, code=code)
    ...
    await app.codes.redeem("signin", address, typed_code)   # InvalidCode (400) unless right

A code is six digits, valid for `ttl` seconds, and good for one redemption;
`attempts` wrong tries void it. A new code for the same purpose and key
replaces the last. Neither the code nor the key is stored: the database holds
keyed hashes (with the `one-time-codes` secret), so a leaked database reveals
no address and no code, and a code cannot be guessed from it.

Every attempt counts, committed before the answer: `redeem` refuses to run
inside a transaction, where a wrong code's rollback would let a guesser try
again for free. Two redemptions of one code at once: one wins.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import TYPE_CHECKING

from shoestring.db.database import current_transaction
from shoestring.db.migrations import Migration
from shoestring.errors import HTTPError
from shoestring.tables.table import write_joined

if TYPE_CHECKING:
    from shoestring.app import App

MIGRATIONS = [
    Migration(
        "codes",
        1,
        [
            "CREATE TABLE shoestring_codes ("
            " key TEXT PRIMARY KEY, code TEXT NOT NULL, attempts INTEGER NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX shoestring_codes_expiry ON shoestring_codes (expires_at)",
        ],
    )
]

PURGE_EVERY = 100  # codes issued between removals of expired ones

_ISSUE = (
    "INSERT INTO shoestring_codes (key, code, attempts, expires_at) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " code = excluded.code, attempts = 0, expires_at = excluded.expires_at"
)
_ATTEMPT = (
    "UPDATE shoestring_codes SET attempts = attempts + 1"
    " WHERE key = ? AND attempts < ? AND expires_at > ? RETURNING code"
)
_CONSUME = "DELETE FROM shoestring_codes WHERE key = ? AND code = ? RETURNING key"


class InvalidCode(HTTPError):
    """The code is wrong, expired, used, or tried too often: answer 400 `invalid_code`."""

    def __init__(self) -> None:
        super().__init__(
            400, "The code is wrong or has expired; ask for a new one.", code="invalid_code"
        )


class Codes:
    """Codes in `shoestring_codes` (see the module docstring)."""

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(MIGRATIONS)
        self._issued = 0

    def _keyed(self, *parts: str) -> str:
        return self._app.secrets.keyed_hash("one-time-codes", *parts)

    async def issue(self, purpose: str, key: str, *, ttl: float = 15 * 60) -> str:
        """A new code for `key` (an address, or anything it stands for), replacing any before.

        Inside `app.tables.transaction()` it is stored with the transaction.
        """
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        code = f"{secrets.randbelow(10**6):06d}"
        params = [self._keyed("key", purpose, key), self._keyed("code", code), time.time() + ttl]
        database = self._app.db.database
        await write_joined(database, _ISSUE, params)
        self._issued += 1
        if self._issued % PURGE_EVERY == 0:
            await write_joined(
                database, "DELETE FROM shoestring_codes WHERE expires_at < ?", [time.time()]
            )
        return code

    async def redeem(self, purpose: str, key: str, code: str, *, attempts: int = 5) -> None:
        """Use up `key`'s code if `code` is it; InvalidCode otherwise (the try still counts)."""
        if current_transaction.get() is not None:
            raise RuntimeError(
                "redeem a code outside app.tables.transaction(): a wrong code's attempt "
                "must be kept, and the transaction would roll it back"
            )
        stored_key = self._keyed("key", purpose, key)
        database = self._app.db.database
        rows = await database.write_returning(_ATTEMPT, [stored_key, attempts, time.time()])
        given = self._keyed("code", code)
        if not rows or not hmac.compare_digest(str(rows[0][0]), given):
            raise InvalidCode
        if not await database.write_returning(_CONSUME, [stored_key, given]):
            raise InvalidCode  # redeemed at the same moment by another request
