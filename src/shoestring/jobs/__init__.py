"""Durable jobs, schedules and the worker that runs them (our SQS and cron)."""

from shoestring.jobs.errors import JobError, JobNotFound, RetryLater, UnknownJob
from shoestring.jobs.job import Job, RetryPolicy
from shoestring.jobs.schedule import Schedule
from shoestring.jobs.service import Jobs

__all__ = [
    "Job",
    "JobError",
    "JobNotFound",
    "Jobs",
    "RetryLater",
    "RetryPolicy",
    "Schedule",
    "UnknownJob",
]
