"""`app.codes`: one-time codes sent to people (by mail) to prove they read it.

    async with app.tables.transaction():      # the code exists if and only if its mail is queued
        code = await app.codes.issue("signin", address)
        await app.mail.send_template("signin", to=address, code=code)
    ...
    await app.codes.redeem("signin", address, typed_code)   # InvalidCode (400) unless right

A code is six digits, valid for `ttl` seconds, and good for one redemption;
`attempts` wrong tries void it. Asked again while its code is live (someone
clicked "send again", or someone else typed the same address), `issue` gives
the same code with a fresh `ttl` and the tries made so far still counted: the
person's mail keeps working whoever asks, and asking again buys a guesser
nothing. Once the code is used, voided or expired, the next is a new one.

Wrong tries are also capped per key and day (`failures_per_day`, a 429 past
it): however many codes are asked for, an address cannot be guessed into
(six digits and 25 tries a day give a guesser about one chance in 100 a
year). The flip side: whoever makes that many wrong tries holds the address
back until the day ends.

Neither a code nor a key is stored: the database holds keyed hashes (with the
`one-time-codes` secret) and a random nonce the code is derived from with the
same secret, so a leaked database reveals no address and no code.

Every attempt counts, committed before the answer: `redeem` refuses to run
inside a transaction, where a wrong code's rollback would let a guesser try
again for free. Two redemptions of one code at once: one wins.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

from shoestring.db.database import current_transaction
from shoestring.db.migrations import Migration
from shoestring.errors import HTTPError
from shoestring.limits import RateLimited
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
    ),
    # What the live code is derived from, so asking again sends the same one.
    Migration("codes", 2, ["ALTER TABLE shoestring_codes ADD COLUMN nonce TEXT"]),
]

PURGE_EVERY = 100  # codes issued between removals of expired ones

FAILURES = "one-time-code-failures"  # the rate limit counting wrong tries per key

# A live code (a nonce, not expired or voided) is kept with its tries; a dead one replaced.
_ISSUE = (
    "INSERT INTO shoestring_codes (key, code, attempts, expires_at, nonce) VALUES (?, ?, 0, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " code = CASE WHEN shoestring_codes.nonce IS NOT NULL AND shoestring_codes.expires_at > ?"
    " THEN shoestring_codes.code ELSE excluded.code END,"
    " attempts = CASE WHEN shoestring_codes.nonce IS NOT NULL AND shoestring_codes.expires_at > ?"
    " THEN shoestring_codes.attempts ELSE 0 END,"
    " nonce = CASE WHEN shoestring_codes.nonce IS NOT NULL AND shoestring_codes.expires_at > ?"
    " THEN shoestring_codes.nonce ELSE excluded.nonce END,"
    " expires_at = excluded.expires_at"
    " RETURNING nonce"
)
_ATTEMPT = (
    "UPDATE shoestring_codes SET attempts = attempts + 1"
    " WHERE key = ? AND attempts < ? AND expires_at > ? RETURNING code, attempts"
)
_VOID = "UPDATE shoestring_codes SET expires_at = 0 WHERE key = ?"
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

    def _code(self, purpose: str, key: str, nonce: str) -> str:
        digest = self._keyed("code-of", purpose, key, nonce)
        return f"{int(digest[:15], 16) % 10**6:06d}"

    async def issue(self, purpose: str, key: str, *, ttl: float = 15 * 60) -> str:
        """The code for `key` (an address, or anything it stands for), valid for `ttl` seconds.

        The live code again if there is one (see the module docstring), else a
        new one. Inside `app.tables.transaction()` it is stored with the transaction.
        """
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        nonce = secrets.token_hex(16)
        now = time.time()
        code = self._code(purpose, key, nonce)
        params = [self._keyed("key", purpose, key), self._keyed("code", code), now + ttl, nonce]
        database = self._app.db.database
        joined = current_transaction.get()
        sql_params = [*params, now, now, now]
        if joined is not None:
            rows = await joined.fetchall(_ISSUE, sql_params)
        else:
            rows = await database.write_returning(_ISSUE, sql_params)
        if rows[0][0] != nonce:  # the live code, sent again
            code = self._code(purpose, key, str(rows[0][0]))
        self._issued += 1
        if self._issued % PURGE_EVERY == 0:
            await write_joined(
                database, "DELETE FROM shoestring_codes WHERE expires_at < ?", [time.time()]
            )
        return code

    async def redeem(
        self, purpose: str, key: str, code: str, *, attempts: int = 5, failures_per_day: int = 25
    ) -> None:
        """Use up `key`'s code if `code` is it; InvalidCode otherwise (the try still counts).

        RateLimited (429) once `key` has had `failures_per_day` wrong tries today.
        """
        if current_transaction.get() is not None:
            raise RuntimeError(
                "redeem a code outside app.tables.transaction(): a wrong code's attempt "
                "must be kept, and the transaction would roll it back"
            )
        failures = {"limit": failures_per_day, "per": 24 * 3600}
        await self._app.limits.check(FAILURES, f"{purpose}\0{key}", **failures)
        stored_key = self._keyed("key", purpose, key)
        database = self._app.db.database
        rows = await database.write_returning(_ATTEMPT, [stored_key, attempts, time.time()])
        given = self._keyed("code", code)
        if not rows or not hmac.compare_digest(str(rows[0][0]), given):
            if rows and int(rows[0][1]) >= attempts:
                await database.write(_VOID, [stored_key])  # asking again gives a new one
            with contextlib.suppress(RateLimited):  # this try is wrong; the next ones get 429
                await self._app.limits.hit(FAILURES, f"{purpose}\0{key}", **failures)
            raise InvalidCode
        if not await database.write_returning(_CONSUME, [stored_key, given]):
            raise InvalidCode  # redeemed at the same moment by another request
