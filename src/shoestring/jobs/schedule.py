"""Schedules: cron expressions and fixed intervals, one run per tick across all processes.

Each schedule has a row in `shoestring_schedules` holding its next run time.
Whichever process first finds the row due (under a row lock on PostgreSQL,
the single writer on SQLite) moves it to the next tick after *now* and
enqueues the run as a job in the same transaction, keyed by the tick. So a tick
runs once however many processes watch it, and after downtime the missed ticks
run once, not once each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# croniter's shorthands, spelled out to tell which fields are `*` (cronie does the same).
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


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
        """The first tick strictly after `moment` (epoch seconds).

        Cron ticks are wall-clock times in the schedule's time zone, with
        cronie's rule for daylight saving changes (see `by_real_time`).
        """
        if self.interval is not None:
            return moment + self.interval
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        # When the clocks go back within the next day, wall-clock times up to
        # that much earlier than now's come again after now: start there.
        drop = max(_offset(zone, moment) - _offset(zone, moment + 86400), timedelta(0))
        walls = croniter(self.cron, _wall(zone, moment) - drop - timedelta(seconds=1))
        best: float | None = None
        while True:
            wall: datetime = walls.get_next(datetime)
            if best is not None and wall > _wall(zone, best) + drop:
                return best
            for instant in self._instants(wall, zone):
                if instant > moment and (best is None or instant < best):
                    best = instant

    @property
    def by_real_time(self) -> bool:
        """Whether the cron expression's minute or hour field is a `*` form (cronie's rule).

        Such a schedule (`0 * * * *`, `*/15 * * * *`) runs at every real moment
        its wall-clock time matches: twice in the hour the clocks go back, not
        in the hour they skip. Any other (`30 2 * * *`) runs each wall-clock
        time once: the first time it occurs, or when the clocks jump over it.
        """
        assert self.cron is not None
        fields = _CRON_ALIASES.get(self.cron.strip().lower(), self.cron).split()
        return fields[0].startswith("*") or fields[1].startswith("*")

    def _instants(self, wall: datetime, zone: ZoneInfo) -> tuple[float, ...]:
        """The moments this schedule runs for the local time `wall`: none, one or two."""
        first = wall.replace(tzinfo=zone, fold=0).timestamp()
        second = wall.replace(tzinfo=zone, fold=1).timestamp()
        if first == second:
            return (first,)
        if first < second:  # the clocks went back: `wall` happens twice
            return (first, second) if self.by_real_time else (first,)
        # The clocks jumped over `wall` (fold=1 reads it with the offset after the jump).
        return () if self.by_real_time else (_jump(zone, second, first),)

    def describe(self) -> str:
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return f"{self.cron} ({self.timezone})"


def _wall(zone: ZoneInfo, moment: float) -> datetime:
    """The local time at `moment`, naive: croniter then steps through wall-clock times."""
    return datetime.fromtimestamp(moment, zone).replace(tzinfo=None)


def _offset(zone: ZoneInfo, moment: float) -> timedelta:
    return datetime.fromtimestamp(moment, zone).utcoffset() or timedelta(0)


def _jump(zone: ZoneInfo, before: float, after: float) -> float:
    """The moment the clocks jumped forward, between `before` and `after` (whole seconds)."""
    low, high = math.floor(before), math.ceil(after)
    target = _offset(zone, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == target:
            high = middle
        else:
            low = middle
    return float(high)
