"""Errors of jobs and schedules.

JobError              anything the jobs API raises on purpose
├── UnknownJob        a stored job names a function the app no longer defines
└── JobNotFound       `jobs retry/cancel ID` names no such job (or one in the wrong state)
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class JobError(ShoestringError):
    """Base class of job errors."""


class UnknownJob(JobError):
    """No job function of this name is defined by the app."""


class JobNotFound(JobError):
    """No job with this id, or not in a state that allows the operation."""
