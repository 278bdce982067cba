"""Job: an async function the app runs later, durably, with retries."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

if TYPE_CHECKING:
    from shoestring.jobs.service import Jobs

P = ParamSpec("P")

MAX_BACKOFF = 3600.0  # seconds; a retry is never further away than an hour


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which run of a job this is: `number` of at most `of` (1-based)."""

    number: int
    of: int

    @property
    def last(self) -> bool:
        """No retry follows if this attempt fails: a job may give up in its own way."""
        return self.number >= self.of


_attempt: ContextVar[Attempt | None] = ContextVar("shoestring_job_attempt", default=None)


def current_attempt() -> Attempt | None:
    """The attempt the worker is running now; None outside a job run by the worker."""
    return _attempt.get()


def begin_attempt(number: int, of: int) -> None:
    """The worker's: the job run in the current task is attempt `number` of `of`."""
    _attempt.set(Attempt(number, of))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 3
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    timeout: float = 300.0  # seconds one attempt may run

    def delay(self, attempt: int) -> float:
        """Seconds before retrying after failed `attempt` (1-based), with ±50% jitter."""
        base = min(MAX_BACKOFF, self.backoff * 2.0 ** (attempt - 1))
        return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security


class Job(Generic[P]):
    """Returned by `@app.job`: call it to run now, `enqueue` it to run durably later."""

    def __init__(
        self,
        jobs: Jobs,
        function: Callable[P, Awaitable[Any]],
        *,
        name: str,
        queue: str,
        policy: RetryPolicy,
    ) -> None:
        self._jobs = jobs
        self.function = function
        self.name = name
        self.queue = queue
        self.policy = policy
        self.__doc__ = function.__doc__

    def __repr__(self) -> str:
        return f"<Job {self.name} queue={self.queue!r} retries={self.policy.retries}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function now, in this task (no queue, no retries)."""
        return await self.function(*args, **kwargs)

    async def enqueue(
        self,
        *args: Any,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Queue a run with these arguments; returns the job id once it is committed.

        Arguments are stored as JSON (plus bytes and datetime). With an
        `idempotency_key` already used, nothing new is queued and the first
        job's id is returned. Inside `app.tables.transaction()` the job commits
        (or not) with the table writes.
        """
        return await self._jobs.enqueue(
            self, args, kwargs, delay=delay, idempotency_key=idempotency_key
        )
