"""`app.limits`: rate limits shared by every process of the app, kept in its database.

    await app.limits.hit("register-ip", client_network(request), limit=10, per=3600)

`hit` counts one event for `key` under the limit `name` and raises
RateLimited (an HTTP 429 with Retry-After when it reaches a handler) once
there have been more than `limit` in the current window of `per` seconds.
Refused events count too, so hammering stays refused until the window ends
(inside `app.tables.transaction()` the count commits with the transaction, so
a refusal that rolls it back is not counted; the limit still holds).

Windows are fixed (they start at multiples of `per`): a client can get up to
twice `limit` through around a window's boundary, never more. Keys are
stored as keyed hashes (with the `rate-limits` secret), so IP addresses and
email addresses used as keys never reach the database.
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import TYPE_CHECKING

from shoestring.db.database import current_transaction
from shoestring.db.migrations import Migration
from shoestring.errors import HTTPError
from shoestring.tables.table import write_joined

if TYPE_CHECKING:
    from starlette.requests import Request

    from shoestring.app import App

MIGRATIONS = [
    Migration(
        "limits",
        1,
        [
            "CREATE TABLE shoestring_rate_limits ("
            " key TEXT PRIMARY KEY, window_start DOUBLE PRECISION NOT NULL,"
            " hits INTEGER NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX shoestring_rate_limits_expiry ON shoestring_rate_limits (expires_at)",
        ],
    )
]

PURGE_EVERY = 1000  # hits between removals of expired counters

_HIT = (
    "INSERT INTO shoestring_rate_limits (key, window_start, hits, expires_at) VALUES (?, ?, 1, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " hits = CASE WHEN shoestring_rate_limits.window_start = excluded.window_start"
    " THEN shoestring_rate_limits.hits + 1 ELSE 1 END,"
    " window_start = excluded.window_start, expires_at = excluded.expires_at"
    " RETURNING hits"
)


def network(address: str) -> str:
    """The client an address stands for, as limits count it.

    An IPv4 address is one client. An IPv6 address is counted by its /64: a
    host usually has a whole /64 to pick addresses from, so a limit per address
    would hold nobody back.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client, a Unix socket): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_network(request: Request) -> str:
    """The key a per-client rate limit counts `request` under (see `network`)."""
    return network(request.client.host) if request.client else "unknown"


class RateLimited(HTTPError):
    """More than the limit: answer 429 and say when to come back."""

    def __init__(self, name: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            429,
            f"Too many requests ({name}); try again in {seconds} s.",
            code="rate_limited",
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds


class RateLimits:
    """Counters in `shoestring_rate_limits` (see the module docstring)."""

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(MIGRATIONS)
        self._hits = 0

    async def hit(self, name: str, key: str, *, limit: int, per: float) -> None:
        """Count one event; RateLimited if `key` has had more than `limit` in this window."""
        if limit < 1 or per <= 0:
            raise ValueError("limit must be >= 1 and per > 0")
        now, window_start, digest = self._window(name, key, per)
        joined = current_transaction.get()
        if joined is not None:  # inside app.tables.transaction(): count with it
            row = await joined.fetchone(_HIT, [digest, window_start, window_start + per])
        else:
            (row,) = await self._app.db.database.write_returning(
                _HIT, [digest, window_start, window_start + per], durable=False
            )
        assert row is not None
        self._hits += 1
        if self._hits % PURGE_EVERY == 0:
            await write_joined(
                self._app.db.database,
                "DELETE FROM shoestring_rate_limits WHERE expires_at < ?",
                [now],
            )
        if int(row[0]) > limit:
            raise RateLimited(name, window_start + per - now)

    async def check(self, name: str, key: str, *, limit: int, per: float) -> None:
        """RateLimited if `key` has had `limit` events or more in this window; counts none."""
        now, window_start, digest = self._window(name, key, per)
        # On the writer: hits are counted without waiting for their commit (see `hit`),
        # and only the writer's connection sees them before it.
        rows = await self._app.db.database.write_returning(
            "SELECT hits FROM shoestring_rate_limits WHERE key = ? AND window_start = ?",
            [digest, window_start],
            durable=False,
        )
        if rows and int(rows[0][0]) >= limit:
            raise RateLimited(name, window_start + per - now)

    def _window(self, name: str, key: str, per: float) -> tuple[float, float, str]:
        """Now, the start of the window it falls in, and the stored (hashed) key."""
        now = time.time()
        return now, now - now % per, self._app.secrets.keyed_hash("rate-limits", name, key)[:40]
