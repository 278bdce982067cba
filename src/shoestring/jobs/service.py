"""`app.jobs`: the App's jobs and schedules, its worker and its scheduler."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec

from shoestring.db.database import Transaction, current_transaction
from shoestring.jobs import store
from shoestring.jobs.job import Job, RetryPolicy
from shoestring.jobs.schedule import Schedule
from shoestring.jobs.scheduler import Scheduler
from shoestring.jobs.worker import Worker
from shoestring.services import Health

if TYPE_CHECKING:
    from shoestring.app import App

P = ParamSpec("P")
_QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Jobs:
    """A service: runs the worker and the scheduler with the app (per `jobs.*` settings)."""

    name = "jobs"

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(store.MIGRATIONS)
        self.definitions: dict[str, Job[...]] = {}
        self.schedules: list[Schedule] = []
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None

    def define(
        self,
        function: Callable[P, Awaitable[Any]],
        *,
        name: str | None = None,
        retries: int = 3,
        backoff: float = 2.0,
        timeout: float = 300.0,
        queue: str = "default",
    ) -> Job[P]:
        job_name = name or f"{function.__module__}.{function.__qualname__}"
        if job_name in self.definitions:
            raise ValueError(f"a job named {job_name!r} is already defined; pass name=")
        if not _QUEUE.match(queue):
            raise ValueError(f"queue {queue!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if retries < 0 or backoff <= 0 or timeout <= 0:
            raise ValueError("retries must be >= 0, backoff and timeout > 0")
        job = Job(
            self,
            function,
            name=job_name,
            queue=queue,
            policy=RetryPolicy(retries, backoff, timeout),
        )
        self.definitions[job_name] = job
        return job

    def add_schedule(self, schedule: Schedule) -> None:
        if any(s.name == schedule.name for s in self.schedules):
            raise ValueError(f"a schedule named {schedule.name!r} is already defined")
        self.schedules.append(schedule)

    async def enqueue(
        self,
        job: Job[...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        delay: float,
        idempotency_key: str | None,
    ) -> str:
        new = self.new_job(job, args, kwargs, delay=delay, idempotency_key=idempotency_key)
        joined = current_transaction.get()
        if joined is not None:
            job_id = await store.insert(joined, new)
        else:
            job_id = await store.insert_alone(self._app.db.database, new)
        if delay <= 0:
            self.wake()
        return job_id

    async def enqueue_in(
        self,
        tx: Transaction,
        job: Job[...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        *,
        delay: float = 0.0,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue `job` inside `tx`: it runs if and only if `tx` commits.

        Call `wake()` after the commit for the worker of this process to look at once.
        """
        new = self.new_job(job, args, kwargs, delay=delay, idempotency_key=idempotency_key)
        return await store.insert(tx, new)

    def new_job(
        self,
        job: Job[...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        *,
        delay: float = 0.0,
        idempotency_key: str | None = None,
    ) -> store.NewJob:
        """The statement that queues `job`, for a caller batching it with its own writes.

        Raises for arguments that cannot be stored, before anything is written.
        """
        return store.new_job(
            queue=job.queue,
            name=job.name,
            args=args,
            kwargs=kwargs or {},
            max_attempts=job.policy.retries + 1,
            run_at=time.time() + max(0.0, delay),
            idempotency_key=idempotency_key,
        )

    def wake(self) -> None:
        """Have this process's worker look for due jobs now instead of at its next poll."""
        if self.worker is not None:
            self.worker.wake.set()

    async def make_due(self, job_id: str, args: tuple[Any, ...]) -> bool:
        """Run a queued job now with new arguments; False if it has started or finished."""
        if not await store.make_due(self._app.db.database, job_id, args):
            return False
        if self.worker is not None:
            self.worker.wake.set()
        return True

    # -- service ---------------------------------------------------------------

    async def start(self) -> None:
        settings = self._app.settings.jobs
        database = self._app.db.database
        if settings.worker and self.definitions:
            self.worker = Worker(
                database,
                self.definitions,
                concurrency=settings.concurrency,
                poll_interval=settings.poll_interval,
                shutdown_timeout=settings.shutdown_timeout,
                keep_finished=settings.keep_finished_hours * 3600,
            )
            self.worker.start()
        if settings.scheduler and self.schedules:
            self.scheduler = Scheduler(database, self.schedules, self.definitions)
            self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.worker is not None:
            await self.worker.stop()

    async def health(self) -> Health:
        for part, runner in (("worker", self.worker), ("scheduler", self.scheduler)):
            if runner is not None and not runner.alive:
                return Health(ok=False, detail=f"the {part} stopped")
        return Health(ok=True)
