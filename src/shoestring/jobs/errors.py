"""Errors of jobs and schedules.

JobError              anything the jobs API raises on purpose
├── UnknownJob        a stored job names a function the app no longer defines
├── JobNotFound       `jobs retry/cancel ID` names no such job (or one in the wrong state)
└── RetryLater        raised by a job: run me again in N seconds, not counting this attempt
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class JobError(ShoestringError):
    """Base class of job errors."""


class UnknownJob(JobError):
    """No job function of this name is defined by the app."""


class JobNotFound(JobError):
    """No job with this id, or not in a state that allows the operation."""


class RetryLater(JobError):
    """Raise from a job to run it again in `seconds` without counting the attempt.

    For waits that are not failures: a rate limit, a resource not ready yet.
    The job gives its worker slot back instead of sleeping in it.
    """

    def __init__(self, seconds: float, reason: str = "") -> None:
        self.seconds = max(0.0, seconds)
        super().__init__(reason or f"retry in {self.seconds:.1f}s")
