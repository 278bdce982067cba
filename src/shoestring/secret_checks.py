"""Every process of an app must use the same secrets: a check against the shared database.

A secret the app makes with `app.secrets.ensure(name)` (an HMAC key, the
rate limits' key) is random, and lives in one node's data directory. A second
node started without a copy would make its own, and the two would disagree
without a word: registrations made through one failing on the other, rate
limits counted apart. The same happens on one box whose secrets directory was
lost while its database was kept.

So the first time a process uses such a secret, its fingerprint is recorded
in the database, or compared with the one recorded there. A process whose
value differs logs an error saying what to copy, and reports not ready on
`/_ready`, which keeps it out of a proxy's rotation and fails a deploy's
health check. `shoestring secrets set NAME` forgets the recorded fingerprint,
so a secret replaced on purpose is recorded afresh.

The fingerprint is scrypt of the value, salted with its name: a dump of the
database does not help anyone guess a secret.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
from typing import TYPE_CHECKING

from shoestring.db.database import Database
from shoestring.db.migrations import Migration
from shoestring.secrets import environment_variable
from shoestring.services import Health

if TYPE_CHECKING:
    from shoestring.app import App

log = logging.getLogger("shoestring.secrets")

MIGRATIONS = [
    Migration(
        "secrets",
        1,
        [
            "CREATE TABLE shoestring_secret_fingerprints ("
            " name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)"
        ],
    )
]


def fingerprint(name: str, value: str) -> str:
    """scrypt of `value` salted with `name` (~50 ms: call it off the event loop)."""
    salt = b"shoestring secret fingerprint:" + name.encode()
    return hashlib.scrypt(value.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32).hex()


async def forget(database: Database, name: str) -> None:
    """Drop the recorded fingerprint of `name`: its next use records the value it has then."""
    await database.write("DELETE FROM shoestring_secret_fingerprints WHERE name = ?", [name])


class SecretChecks:
    """The service behind the check (see the module docstring)."""

    name = "secrets"

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(MIGRATIONS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: dict[str, str] = {}  # used before the database was open
        self._checked: set[str] = set()
        self._differing: set[str] = set()
        self._checks: set[concurrent.futures.Future[bool]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        early, self._early = self._early, {}
        for name, value in early.items():
            self.used(name, value)

    async def stop(self) -> None:
        await self.settled()
        self._loop = None

    async def settled(self) -> None:
        """Wait for the checks under way to finish."""
        checks = [asyncio.wrap_future(check) for check in list(self._checks)]
        await asyncio.gather(*checks, return_exceptions=True)

    async def health(self) -> Health:
        if not self._differing:
            return Health(ok=True)
        names = ", ".join(sorted(self._differing))
        return Health(
            ok=False,
            detail=f"secret(s) {names} differ from the one(s) this app's database was used "
            "with: see the log for what to copy",
        )

    def used(self, name: str, value: str) -> None:
        """`app.secrets.ensure`'s hook, from any thread: check `name` once per process."""
        if self._loop is None:
            self._early[name] = value
            return
        if name in self._checked:
            return
        self._checked.add(name)
        check = asyncio.run_coroutine_threadsafe(self.check(name, value), self._loop)
        self._checks.add(check)
        check.add_done_callback(self._finished)

    def _finished(self, check: concurrent.futures.Future[bool]) -> None:
        self._checks.discard(check)
        if not check.cancelled() and check.exception() is not None:
            log.error("checking a secret against the database failed: %s", check.exception())

    async def check(self, name: str, value: str) -> bool:
        """Record `value`'s fingerprint, or compare it with the recorded one; True if it agrees."""
        mark = await asyncio.to_thread(fingerprint, name, value)
        rows = await self._app.db.database.write_returning(
            "INSERT INTO shoestring_secret_fingerprints (name, fingerprint) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING fingerprint",
            [name, mark],
        )
        if rows[0][0] == mark:
            self._differing.discard(name)
            return True
        self._differing.add(name)
        log.error(
            "secret %s is not the one this app's database was used with (another node "
            "made it first, or this node's secrets directory was lost): copy "
            "<data_dir>/secrets/%s from a node that serves, or set %s to the same value "
            "there and here, then restart. If it was replaced on purpose, "
            "`shoestring secrets set %s` records the new value.",
            name,
            name,
            environment_variable(name),
            name,
        )
        return False
