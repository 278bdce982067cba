"""Schedules: cron expressions and fixed intervals, one run per tick across all processes.

Each schedule has a row in `shoestring_schedules` holding its next run time.
Whichever process first finds the row due (under a row lock on PostgreSQL,
the single writer on SQLite) moves it to the next tick after *now* and
enqueues the run as a job in the same transaction, keyed by the tick. So a tick
runs once however many processes watch it, and after downtime the missed ticks
run once, not once each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    job_name: str
    spec: str  # "cron:<expr>@<tz>" or "every:<seconds>"
    cron: str | None = None
    timezone: str = "UTC"
    interval: float | None = None

    @classmethod
    def from_cron(cls, name: str, job_name: str, expression: str, timezone: str) -> Schedule:
        if not croniter.is_valid(expression):
            raise ValueError(f"{expression!r} is not a cron expression like '0 3 * * *'")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {timezone!r}; use an IANA name like 'Europe/Berlin'"
            ) from None
        return cls(
            name, job_name, f"cron:{expression}@{timezone}", cron=expression, timezone=timezone
        )

    @classmethod
    def from_interval(cls, name: str, job_name: str, seconds: float) -> Schedule:
        if seconds < 1:
            raise ValueError("a schedule runs at most once a second")
        return cls(name, job_name, f"every:{seconds:g}", interval=seconds)

    def next_after(self, moment: float) -> float:
        """The first tick strictly after `moment` (epoch seconds)."""
        if self.interval is not None:
            return moment + self.interval
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        start = datetime.fromtimestamp(moment, zone)
        following: datetime = croniter(self.cron, start).get_next(datetime)
        if following.timestamp() <= moment:  # croniter rounds to whole seconds
            following = croniter(self.cron, start + timedelta(seconds=1)).get_next(datetime)
        return following.timestamp()

    def describe(self) -> str:
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return f"{self.cron} ({self.timezone})"
