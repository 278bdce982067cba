"""Runs the app's schedules: turns each due tick into exactly one job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from shoestring.jobs import store
from shoestring.jobs.schedule import Schedule

if TYPE_CHECKING:
    from shoestring.db.database import Database
    from shoestring.jobs.job import Job

log = logging.getLogger("shoestring.schedules")

CHECK_INTERVAL = 1.0  # seconds: the resolution of schedules


class Scheduler:
    def __init__(
        self, database: Database, schedules: list[Schedule], jobs: dict[str, Job[...]]
    ) -> None:
        self.database = database
        self.schedules = schedules
        self.jobs = jobs
        self.enqueued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="shoestring-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run_forever(self) -> None:
        while True:
            for schedule in self.schedules:
                try:
                    if await self.tick(schedule):
                        self.enqueued.set()
                except Exception:
                    log.exception("schedule %s could not be checked; trying again", schedule.name)
            await asyncio.sleep(CHECK_INTERVAL)

    async def tick(self, schedule: Schedule, now: float | None = None) -> bool:
        """Enqueue the schedule's job if its tick is due; True if this call did."""
        now = time.time() if now is None else now
        row = await self.database.fetchone(
            "SELECT spec, next_run FROM shoestring_schedules WHERE name = ?", [schedule.name]
        )
        if row is not None and row[0] == schedule.spec and row[1] > now:
            return False  # the common case, answered without a write
        lock = " FOR UPDATE" if self.database.dialect == "postgresql" else ""
        async with self.database.transaction() as tx:
            row = await tx.fetchone(
                f"SELECT spec, next_run FROM shoestring_schedules WHERE name = ?{lock}",
                [schedule.name],
            )
            if row is None or row[0] != schedule.spec:
                # New or changed: the first run is the next tick from now.
                await tx.execute(
                    "INSERT INTO shoestring_schedules (name, spec, next_run) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_run = excluded.next_run",
                    [schedule.name, schedule.spec, schedule.next_after(now)],
                )
                return False
            due = float(row[1])
            if due > now:
                return False
            await tx.execute(
                "UPDATE shoestring_schedules SET next_run = ?, last_run = ? WHERE name = ?",
                [schedule.next_after(now), now, schedule.name],
            )
            job = self.jobs[schedule.job_name]
            await store.insert(
                tx,
                store.new_job(
                    queue=job.queue,
                    name=job.name,
                    args=(),
                    kwargs={},
                    max_attempts=job.policy.retries + 1,
                    run_at=now,
                    idempotency_key=f"schedule:{schedule.name}:{due:.3f}",
                ),
            )
        log.info("schedule %s fired", schedule.name)
        return True
