"""The durable queue: one row per job in `shoestring_jobs`, in the app's database.

    queued ──claim──▶ running ──▶ succeeded
       ▲                 │
       └── retry (backoff) ◀─ failed attempt ──▶ dead (after the last attempt)

A claim takes a lease (`lease_until`); a job whose worker died is claimed again
once its lease expires, or made dead by that claim if it was its last attempt.
On PostgreSQL, workers on many hosts claim with `FOR UPDATE SKIP LOCKED`; on
SQLite the single writer serialises claims.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from shoestring.db.database import Database, Transaction
from shoestring.db.migrations import Migration
from shoestring.tables import codec

STATES = ("queued", "running", "succeeded", "dead", "cancelled")

MAX_ERROR_CHARS = 2000  # of a job's `last_error`

# The error of a job whose worker died (kill -9, power loss) during its last
# attempt, keeping what the attempt before it failed with, if anything.
_DIED_ON_LAST_ATTEMPT = (
    "SUBSTR('the worker running its last attempt stopped (lease expired)'"
    " || COALESCE('; the attempt before failed with ' || last_error, ''), 1, "
    f"{MAX_ERROR_CHARS})"
)

log = logging.getLogger("shoestring.jobs")

MIGRATIONS = [
    Migration(
        "jobs",
        1,
        [
            "CREATE TABLE shoestring_jobs ("
            " id TEXT PRIMARY KEY, queue TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,"
            " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
            " run_at DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION, worker TEXT,"
            " idempotency_key TEXT UNIQUE, last_error TEXT,"
            " created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION)",
            "CREATE INDEX shoestring_jobs_due ON shoestring_jobs (queue, state, run_at)",
            "CREATE INDEX shoestring_jobs_lease ON shoestring_jobs (state, lease_until)",
            "CREATE TABLE shoestring_schedules ("
            " name TEXT PRIMARY KEY, spec TEXT NOT NULL, next_run DOUBLE PRECISION NOT NULL,"
            " last_run DOUBLE PRECISION)",
        ],
    )
]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    queue: str
    name: str
    state: str
    attempts: int
    max_attempts: int
    run_at: float
    last_error: str | None
    created_at: float
    finished_at: float | None


RECORD_COLUMNS = (
    "id, queue, name, state, attempts, max_attempts, run_at, last_error, created_at, finished_at"
)


class NewJob(NamedTuple):
    """The INSERT that adds a job: it returns the new id, or no row if the key was used."""

    sql: str
    params: list[Any]
    idempotency_key: str | None


def new_job(
    *,
    queue: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    max_attempts: int,
    run_at: float,
    idempotency_key: str | None,
) -> NewJob:
    payload = codec.dumps({"args": list(args), "kwargs": kwargs})
    sql = (
        "INSERT INTO shoestring_jobs (id, queue, name, args, state, max_attempts, run_at,"
        " idempotency_key, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
    )
    params = [uuid.uuid4().hex, queue, name, payload, max_attempts, run_at, idempotency_key]
    return NewJob(sql, [*params, time.time()], idempotency_key)


_BY_KEY = "SELECT id FROM shoestring_jobs WHERE idempotency_key = ?"


async def insert(tx: Transaction, job: NewJob) -> str:
    """Add a job in `tx`; with an idempotency key already used, return the existing job's id."""
    row = await tx.fetchone(job.sql, job.params)
    if row is None:
        row = await tx.fetchone(_BY_KEY, [job.idempotency_key])
    assert row is not None
    return str(row[0])


async def insert_alone(database: Database, job: NewJob) -> str:
    """`insert` as a transaction of its own: one trip to the database when the key is new."""
    rows = await database.write_returning(job.sql, job.params)
    if not rows:  # read where the writes are: the other job may not be committed yet
        rows = await database.write_returning(_BY_KEY, [job.idempotency_key])
    return str(rows[0][0])


async def claim(
    database: Database,
    queues: list[str],
    worker: str,
    limit: int,
    leases: Mapping[str, float],
    other_lease: float,
) -> list[ClaimedJob]:
    """Lease up to `limit` due jobs (or jobs whose lease expired) for `worker`.

    Each job's lease lasts `leases[its name]` seconds (`other_lease` for a
    name not there), so a job whose worker died is retried as soon as its
    own timeout allows, not the longest of any job's.

    A job whose worker died on its last attempt is not run again: the same
    statement makes it dead, so no claim can slip in before housekeeping
    buries it. Such jobs count towards `limit`, so a claim may return fewer.
    """
    now = time.time()
    marks = ", ".join("?" for _ in queues)
    skip_locked = " FOR UPDATE SKIP LOCKED" if database.dialect == "postgresql" else ""
    by_name = " ".join("WHEN ? THEN ?" for _ in leases)
    lease = f"CASE name {by_name} ELSE ? END" if leases else "?"
    # SET expressions all read the row as it was, so each CASE sees the same test.
    exhausted = "state = 'running' AND attempts >= max_attempts"
    rows = await database.write_returning(
        f"UPDATE shoestring_jobs SET state = CASE WHEN {exhausted} THEN 'dead' ELSE 'running' END,"
        f" attempts = CASE WHEN {exhausted} THEN attempts ELSE attempts + 1 END,"
        f" lease_until = CASE WHEN {exhausted} THEN NULL ELSE ? + {lease} END,"
        f" worker = CASE WHEN {exhausted} THEN worker ELSE ? END,"
        f" finished_at = CASE WHEN {exhausted} THEN ? ELSE finished_at END,"
        f" last_error = CASE WHEN {exhausted} THEN {_DIED_ON_LAST_ATTEMPT} ELSE last_error END"
        f" WHERE id IN (SELECT id FROM shoestring_jobs WHERE queue IN ({marks}) AND ("
        "  (state = 'queued' AND run_at <= ?) OR (state = 'running' AND lease_until < ?))"
        f" ORDER BY run_at LIMIT ?{skip_locked})"
        " RETURNING id, name, args, attempts, max_attempts, state",
        [
            now,
            *itertools.chain(*leases.items()),
            other_lease,
            worker,
            now,
            *queues,
            now,
            now,
            limit,
        ],
    )
    claimed = []
    for job_id, name, args, attempts, max_attempts, state in rows:
        if state == "dead":
            log.error(
                "job %s (%s): the worker running its last attempt stopped; marked dead",
                name,
                job_id,
            )
            continue
        payload = codec.loads(args)
        claimed.append(
            ClaimedJob(job_id, name, payload["args"], payload["kwargs"], attempts, max_attempts)
        )
    return claimed


async def succeed(database: Database, jobs: Sequence[ClaimedJob], worker: str) -> set[str]:
    """Record the success of `jobs` in one statement; return the ids recorded.

    A job whose lease passed to another worker meanwhile is not recorded.
    """
    pairs = ", ".join("(?, ?)" for _ in jobs)
    rows = await database.write_returning(
        "UPDATE shoestring_jobs SET state = 'succeeded', finished_at = ?, lease_until = NULL,"
        " last_error = NULL WHERE worker = ? AND state = 'running'"
        f" AND (id, attempts) IN (VALUES {pairs}) RETURNING id",
        [time.time(), worker, *(value for job in jobs for value in (job.id, job.attempts))],
    )
    return {str(row[0]) for row in rows}


async def fail(
    database: Database, job: ClaimedJob, worker: str, error: str, retry_in: float | None
) -> bool:
    """Record a failed attempt: back to the queue after `retry_in` seconds, or dead if None."""
    now = time.time()
    if retry_in is None:
        sql = "UPDATE shoestring_jobs SET state = 'dead', finished_at = ?, lease_until = NULL, last_error = ?"
        params: list[Any] = [now, error[:MAX_ERROR_CHARS]]
    else:
        sql = "UPDATE shoestring_jobs SET state = 'queued', run_at = ?, lease_until = NULL, last_error = ?"
        params = [now + retry_in, error[:MAX_ERROR_CHARS]]
    changed = await database.write(
        sql + " WHERE id = ? AND worker = ? AND state = 'running' AND attempts = ?",
        [*params, job.id, worker, job.attempts],
    )
    return changed == 1


async def release(database: Database, job: ClaimedJob, worker: str, delay: float = 0.0) -> None:
    """Give an unfinished job back, due in `delay` seconds, without counting the attempt."""
    await database.write(
        "UPDATE shoestring_jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL,"
        " run_at = ? WHERE id = ? AND worker = ? AND state = 'running' AND attempts = ?",
        [time.time() + delay, job.id, worker, job.attempts],
    )


async def bury_exhausted(database: Database) -> int:
    """Jobs whose worker died on their last attempt: dead, not retried forever.

    `claim` buries those of the queues it serves; this catches the others.
    """
    now = time.time()
    return await database.write(
        "UPDATE shoestring_jobs SET state = 'dead', finished_at = ?, lease_until = NULL,"
        f" last_error = {_DIED_ON_LAST_ATTEMPT}"
        " WHERE state = 'running' AND lease_until < ? AND attempts >= max_attempts",
        [now, now],
    )


async def purge_finished(database: Database, older_than: float) -> int:
    return await database.write(
        "DELETE FROM shoestring_jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < ?",
        [time.time() - older_than],
    )


async def records(database: Database, state: str | None, limit: int) -> list[JobRecord]:
    where, params = ("WHERE state = ?", [state]) if state else ("", [])
    rows = await database.fetchall(
        f"SELECT {RECORD_COLUMNS} FROM shoestring_jobs {where} ORDER BY created_at DESC LIMIT ?",
        [*params, limit],
    )
    return [JobRecord(*row) for row in rows]


async def retry(database: Database, job_id: str) -> bool:
    """Put a dead or cancelled job back in the queue with fresh attempts."""
    return (
        await database.write(
            "UPDATE shoestring_jobs SET state = 'queued', attempts = 0, run_at = ?, finished_at = NULL"
            " WHERE id = ? AND state IN ('dead', 'cancelled')",
            [time.time(), job_id],
        )
        == 1
    )


async def make_due(database: Database, job_id: str, args: tuple[Any, ...]) -> bool:
    """Give a job that has not started new arguments and make it due now."""
    payload = codec.dumps({"args": list(args), "kwargs": {}})
    changed = await database.write(
        "UPDATE shoestring_jobs SET args = ?, run_at = ? WHERE id = ? AND state = 'queued'",
        [payload, time.time(), job_id],
    )
    return changed == 1


async def cancel(database: Database, job_id: str) -> bool:
    """Cancel a job that has not started (a running one finishes its attempt)."""
    return (
        await database.write(
            "UPDATE shoestring_jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'queued'",
            [time.time(), job_id],
        )
        == 1
    )
