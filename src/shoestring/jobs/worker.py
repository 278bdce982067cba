"""The worker: claims due jobs, runs them with a timeout, records the outcome.

Runs inside `shoestring run` with `jobs.concurrency` jobs at a time. It wakes
at once when this process enqueues, and polls every `jobs.poll_interval`
seconds for jobs enqueued elsewhere. On stop it claims nothing more, gives
running jobs `jobs.shutdown_timeout` seconds to finish, then cancels them and
puts them back in the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

from shoestring.jobs import store
from shoestring.jobs.errors import RetryLater
from shoestring.jobs.job import begin_attempt

if TYPE_CHECKING:
    from shoestring.db.database import Database
    from shoestring.jobs.job import Job

log = logging.getLogger("shoestring.jobs")

HOUSEKEEPING_INTERVAL = 10.0  # seconds between burying exhausted jobs and purging old ones
LEASE_GRACE = 5.0  # seconds a lease outlives its job's timeout before another worker may take it


class Worker:
    def __init__(
        self,
        database: Database,
        jobs: dict[str, Job[...]],
        *,
        concurrency: int,
        poll_interval: float,
        shutdown_timeout: float,
        keep_finished: float,
    ) -> None:
        self.database = database
        self.jobs = jobs
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.keep_finished = keep_finished
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], store.ClaimedJob] = {}
        # Jobs cancelled by stop(): a CancelledError in any other is the job's failure.
        self._shutdown_cancelled: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._last_housekeeping = 0.0
        self._successes: list[tuple[store.ClaimedJob, asyncio.Future[bool]]] = []
        self._recorder: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._loop is not None and not self._loop.done()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._claim_forever(), name="shoestring-worker")

    async def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._loop is not None:
            await self._loop
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running), timeout=self.shutdown_timeout)
        for task in pending:
            self._shutdown_cancelled.add(task)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            job = self._running.pop(task, None)
            if job is not None:
                await store.release(self.database, job, self.id)
                log.warning(
                    "job %s (%s) did not finish before shutdown; released for retry",
                    job.name,
                    job.id,
                )

    async def _claim_forever(self) -> None:
        leases = {name: job.policy.timeout + LEASE_GRACE for name, job in self.jobs.items()}
        # A job this process does not define is failed at once (see _run): any lease will do.
        other = max(leases.values(), default=300.0 + LEASE_GRACE)
        queues = sorted({job.queue for job in self.jobs.values()}) or ["default"]
        while not self._stopping:
            self.wake.clear()
            free = self.concurrency - len(self._running)
            claimed: list[store.ClaimedJob] = []
            try:
                await self._housekeeping()
                if free > 0:
                    claimed = await store.claim(self.database, queues, self.id, free, leases, other)
            except Exception:
                log.exception("claiming jobs failed; retrying in %ss", self.poll_interval)
            for job in claimed:
                task = asyncio.create_task(self._run(job), name=f"job-{job.name}")
                self._running[task] = job
                task.add_done_callback(self._finished)
            if claimed and len(claimed) == free:
                continue  # more may be due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_interval)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if task not in self._shutdown_cancelled:  # stop() releases those, then frees them
            self._running.pop(task, None)
        self.wake.set()  # a slot is free

    async def _housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping < HOUSEKEEPING_INTERVAL:
            return
        self._last_housekeeping = time.monotonic()
        await store.bury_exhausted(self.database)
        await store.purge_finished(self.database, self.keep_finished)

    async def _record_success(self, job: store.ClaimedJob) -> bool:
        """Record a success durably; False if the job's lease passed to another worker.

        Successes that arrive while one statement is on its way share the next:
        eight jobs finishing together cost one commit, not eight.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._successes.append((job, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_successes())
        return await future

    async def _record_successes(self) -> None:
        while self._successes:
            batch, self._successes = self._successes, []
            try:
                recorded = await store.succeed(self.database, [job for job, _ in batch], self.id)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for job, future in batch:
                if not future.done():
                    future.set_result(job.id in recorded)

    async def _run(self, claimed: store.ClaimedJob) -> None:
        job = self.jobs.get(claimed.name)
        if job is None:
            await store.fail(
                self.database, claimed, self.id, f"the app defines no job {claimed.name!r}", None
            )
            log.error("job %s names no job the app defines; marked dead", claimed.id)
            return
        started = time.perf_counter()
        begin_attempt(claimed.attempts, claimed.max_attempts)  # this task's own
        deadline = asyncio.timeout(job.policy.timeout)
        try:
            async with deadline:
                await job.function(*claimed.args, **claimed.kwargs)
        except asyncio.CancelledError as exc:
            if asyncio.current_task() in self._shutdown_cancelled:
                raise  # stop() releases the job for another worker
            # Not ours: the job awaited something that was cancelled. A failed attempt.
            _consume_cancellation()
            error = (
                error_text(exc)
                if exc.args
                else "CancelledError: something it awaited was cancelled"
            )
            await self._record_failure(job, claimed, exc, error)
            return
        except RetryLater as exc:
            await store.release(self.database, claimed, self.id, delay=exc.seconds)
            log.info("job %s postponed: %s", job.name, exc, extra={"job_id": claimed.id})
            return
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                error = f"TimeoutError: the attempt ran over {job.policy.timeout:g}s"
            else:
                error = error_text(exc)  # the job's own TimeoutError keeps its message
            await self._record_failure(job, claimed, exc, error)
            return
        if not await self._record_success(claimed):
            log.warning(
                "job %s (%s) finished after its lease passed to another worker",
                job.name,
                claimed.id,
            )
        log.info(
            "job %s done",
            job.name,
            extra={"job_id": claimed.id, "ms": round((time.perf_counter() - started) * 1000, 2)},
        )

    async def _record_failure(
        self, job: Job[...], claimed: store.ClaimedJob, exc: BaseException, error: str
    ) -> None:
        last = claimed.attempts >= claimed.max_attempts
        retry_in = None if last else job.policy.delay(claimed.attempts)
        log.warning(
            "job %s failed (attempt %d of %d)%s",
            job.name,
            claimed.attempts,
            claimed.max_attempts,
            "; dead" if last else f"; retry in {retry_in:.1f}s",
            exc_info=exc,
            extra={"job_id": claimed.id},
        )
        # The text may be what the database refuses: the failure must count without it.
        for text in (error, f"{type(exc).__name__} (its message could not be stored)"):
            try:
                await store.fail(self.database, claimed, self.id, text, retry_in)
                return
            except Exception:
                log.exception("recording the failure of job %s (%s) failed", job.name, claimed.id)
        # Still running: once its lease expires, a claim retries it or buries it.


def error_text(exc: BaseException) -> str:
    """`Type: message` for `last_error`, whatever the exception's `__str__` does.

    PostgreSQL text holds neither NUL nor lone surrogates: both are escaped.
    """
    try:
        message = str(exc)
    except Exception:
        try:
            message = repr(exc)
        except Exception:
            message = "(the exception could not be rendered as text)"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    text = text.replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[: store.MAX_ERROR_CHARS]


def _consume_cancellation() -> None:
    """Forget a cancel() of this task that the job let through: the worker goes on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
