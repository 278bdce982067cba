"""Schedules fire once per tick, across processes, and once after downtime."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shoestring.config import JobsSettings
from shoestring.jobs import Schedule
from shoestring.jobs.scheduler import Scheduler
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


def test_cron_ticks_follow_the_time_zone() -> None:
    schedule = Schedule.from_cron("nightly", "nightly", "0 3 * * *", "Europe/Berlin")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    first = datetime.fromtimestamp(schedule.next_after(start), ZoneInfo("Europe/Berlin"))
    second = datetime.fromtimestamp(
        schedule.next_after(first.timestamp()), ZoneInfo("Europe/Berlin")
    )
    assert (first.day, first.hour) == (29, 3)  # the night clocks go forward: still 03:00 local
    assert (second.day, second.hour) == (30, 3)


BERLIN = ZoneInfo("Europe/Berlin")


def ticks(expression: str, start: datetime, count: int) -> list[str]:
    """The next `count` ticks after `start` (Berlin time), as Berlin wall-clock times."""
    schedule = Schedule.from_cron("s", "s", expression, "Europe/Berlin")
    moment, seen = start.timestamp(), []
    for _ in range(count):
        moment = schedule.next_after(moment)
        seen.append(datetime.fromtimestamp(moment, BERLIN).strftime("%d %H:%M %Z"))
    return seen


def test_a_daily_time_the_clocks_repeat_runs_once() -> None:
    # 2025-10-26: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    start = datetime(2025, 10, 25, 12, 0, tzinfo=BERLIN)
    assert ticks("30 2 * * *", start, 3) == ["26 02:30 CEST", "27 02:30 CET", "28 02:30 CET"]
    assert ticks("0 3 * * *", start, 2) == ["26 03:00 CET", "27 03:00 CET"]
    # Added in the repeated hour, after the first 02:30: not again that night.
    inside = datetime(2025, 10, 26, 2, 10, tzinfo=BERLIN, fold=1)
    assert ticks("30 2 * * *", inside, 1) == ["27 02:30 CET"]


def test_a_daily_time_the_clocks_skip_runs_once_when_they_jump() -> None:
    # 2025-03-30: 02:00 CET becomes 03:00 CEST; 02:00-02:59 do not exist.
    start = datetime(2025, 3, 29, 12, 0, tzinfo=BERLIN)
    assert ticks("45 2 * * *", start, 2) == ["30 03:00 CEST", "31 02:45 CEST"]
    assert ticks("0,30 2 * * *", start, 2) == ["30 03:00 CEST", "31 02:00 CEST"]


def test_a_schedule_with_a_star_hour_or_minute_follows_real_time() -> None:
    autumn = datetime(2025, 10, 26, 0, 30, tzinfo=BERLIN)
    assert ticks("0 * * * *", autumn, 4) == [
        "26 01:00 CEST",
        "26 02:00 CEST",
        "26 02:00 CET",
        "26 03:00 CET",
    ]
    assert ticks("*/30 2 * * *", autumn, 5) == [
        "26 02:00 CEST",
        "26 02:30 CEST",
        "26 02:00 CET",
        "26 02:30 CET",
        "27 02:00 CET",
    ]
    spring = datetime(2025, 3, 30, 0, 30, tzinfo=BERLIN)
    assert ticks("0 * * * *", spring, 3) == ["30 01:00 CET", "30 03:00 CEST", "30 04:00 CEST"]
    assert ticks("*/30 2 * * *", spring, 1) == ["31 02:00 CEST"]  # no 02:xx that night


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="not a cron expression"):
        Schedule.from_cron("x", "x", "every day", "UTC")
    with pytest.raises(ValueError, match="unknown time zone"):
        Schedule.from_cron("x", "x", "0 3 * * *", "Mars/Olympus")
    with pytest.raises(ValueError, match="once a second"):
        Schedule.from_interval("x", "x", 0.5)


async def test_one_tick_fires_once_across_three_schedulers(
    database_url: str, tmp_path: Path
) -> None:
    apps = [
        make_app(database_url, tmp_path, jobs=JobsSettings(worker=False, scheduler=False))
        for _ in range(3)
    ]
    for app in apps:

        @app.every(minutes=5, name="sweep")
        async def sweep() -> None: ...

    async with running(apps[0]), running(apps[1]), running(apps[2]):
        schedulers = [
            Scheduler(app.db.database, app.jobs.schedules, app.jobs.definitions) for app in apps
        ]
        schedule = apps[0].jobs.schedules[0]
        t0 = 1_800_000_000.0
        assert await schedulers[0].tick(schedule, now=t0) is False  # first sight: next tick set
        due = t0 + 300
        results = await asyncio.gather(*(s.tick(schedule, now=due + 1) for s in schedulers))
        assert results.count(True) == 1
        # Ten ticks missed while everything was down: one run, not ten.
        later = due + 301 + 3000
        results = await asyncio.gather(*(s.tick(schedule, now=later) for s in schedulers))
        assert results.count(True) == 1
        rows = await apps[0].db.fetchall("SELECT name FROM shoestring_jobs")
    assert len(rows) == 2 and rows[0][0] == "sweep"


async def test_a_schedule_runs_its_function_in_a_running_app(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05))
    ran: list[float] = []

    @app.every(seconds=1)
    async def heartbeat() -> None:
        ran.append(1)

    async with running(app):
        # Pretend the first tick is due now rather than in a second.
        await app.db.fetchall("SELECT 1")
        for _ in range(60):
            if ran:
                break
            await asyncio.sleep(0.1)
    assert ran
