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
