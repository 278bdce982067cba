"""Durable jobs, schedules and the worker that runs them (our SQS and cron)."""

from shoestring.jobs.errors import JobError, JobNotFound, RetryLater, UnknownJob
from shoestring.jobs.job import Attempt, Job, RetryPolicy, current_attempt
from shoestring.jobs.schedule import Schedule
from shoestring.jobs.service import Jobs

__all__ = [
    "Attempt",
    "Job",
    "JobError",
    "JobNotFound",
    "Jobs",
    "RetryLater",
    "RetryPolicy",
    "Schedule",
    "UnknownJob",
    "current_attempt",
]
