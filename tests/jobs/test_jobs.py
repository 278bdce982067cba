"""Jobs on SQLite and PostgreSQL: durable, retried, deduplicated, shut down gracefully."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from shoestring import App
from shoestring.config import JobsSettings
from shoestring.jobs import Attempt, current_attempt, store
from shoestring.jobs.worker import LEASE_GRACE, error_text
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio

FAST = JobsSettings(poll_interval=0.05, shutdown_timeout=2)


def jobs_app(database_url: str, tmp_path: Path, **jobs: Any) -> App:
    settings = FAST.model_copy(update=jobs)
    return make_app(database_url, tmp_path, jobs=settings)


async def wait_for(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def state_of(app: App, job_id: str) -> tuple[str, int, str | None]:
    row = await app.db.fetchone(
        "SELECT state, attempts, last_error FROM shoestring_jobs WHERE id = ?", [job_id]
    )
    assert row is not None
    return row[0], row[1], row[2]


async def test_an_enqueued_job_runs_with_its_arguments(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path)
    seen: list[Any] = []

    @app.job()
    async def greet(name: str, *, blob: bytes) -> None:
        seen.append((name, blob))

    async with running(app):
        job_id = await greet.enqueue("ada", blob=b"\x00\x01")
        await wait_for(lambda: _true(seen))
        await wait_for(lambda: _state_is(app, job_id, "succeeded"))
    assert seen == [("ada", b"\x00\x01")]


async def _true(value: Any) -> bool:
    return bool(value)


async def _state_is(app: App, job_id: str, state: str) -> bool:
    return (await state_of(app, job_id))[0] == state


async def test_failures_are_retried_then_succeed(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path)
    attempts: list[float] = []
    told: list[Attempt | None] = []

    @app.job(retries=3, backoff=0.05)
    async def flaky() -> None:
        attempts.append(time.monotonic())
        told.append(current_attempt())
        if len(attempts) < 3:
            raise ConnectionError("smtp relay unreachable")

    async with running(app):
        job_id = await flaky.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "succeeded"))
        _, count, error = await state_of(app, job_id)
    assert count == 3 and error is None
    # Each run knows which attempt it is, out of the first one and three retries.
    assert told == [Attempt(1, 4), Attempt(2, 4), Attempt(3, 4)]
    assert current_attempt() is None  # outside a run
    # Backoff 0.05 s doubling, with jitter of ±50%: at least 0.025 s, then 0.05 s.
    assert attempts[1] - attempts[0] >= 0.025
    assert attempts[2] - attempts[1] >= 0.05


async def test_after_the_last_retry_the_job_is_dead_and_can_be_retried(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path)
    calls: list[int] = []

    @app.job(retries=1, backoff=0.01)
    async def doomed() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise ValueError("bad input 42")

    async with running(app):
        job_id = await doomed.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "dead"))
        _, attempts, error = await state_of(app, job_id)
        assert attempts == 2 and error == "ValueError: bad input 42"
        assert await store.retry(app.db.database, job_id)
        app.jobs.worker.wake.set()  # type: ignore[union-attr]
        await wait_for(lambda: _state_is(app, job_id, "succeeded"))
    assert len(calls) == 3


async def test_idempotency_key_enqueues_once(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path, worker=False)

    @app.job()
    async def welcome(user: str) -> None: ...

    async with running(app):
        first = await welcome.enqueue("u1", idempotency_key="welcome:u1")
        again = await welcome.enqueue("u1", idempotency_key="welcome:u1")
        other = await welcome.enqueue("u2", idempotency_key="welcome:u2")
        rows = await app.db.fetchall("SELECT id FROM shoestring_jobs")
    assert first == again != other
    assert len(rows) == 2


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_exists(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path, worker=False)
    orders = app.table("orders")

    @app.job()
    async def confirm(order_id: str) -> None: ...

    async with running(app):
        with pytest.raises(RuntimeError):
            async with app.tables.transaction():
                await orders.put({"id": "o1"})
                await confirm.enqueue("o1")
                raise RuntimeError("payment declined")
        async with app.tables.transaction():
            await orders.put({"id": "o2"})
            await confirm.enqueue("o2")
        rows = await app.db.fetchall("SELECT args FROM shoestring_jobs")
    assert len(rows) == 1 and "o2" in rows[0][0]


async def test_an_attempt_over_its_timeout_fails(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path)

    @app.job(retries=0, timeout=0.1)
    async def slow() -> None:
        await asyncio.sleep(5)

    async with running(app):
        job_id = await slow.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "dead"))
        assert "ran over 0.1s" in ((await state_of(app, job_id))[2] or "")


async def test_delayed_and_cancelled_jobs(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path)
    ran: list[str] = []

    @app.job()
    async def remind(what: str) -> None:
        ran.append(what)

    async with running(app):
        later = await remind.enqueue("later", delay=0.4)
        never = await remind.enqueue("never", delay=0.4)
        assert await store.cancel(app.db.database, never)
        await asyncio.sleep(0.2)
        assert ran == []
        await wait_for(lambda: _state_is(app, later, "succeeded"))
        assert (await state_of(app, never))[0] == "cancelled"
    assert ran == ["later"]


async def test_arguments_that_cannot_be_stored_are_refused_at_enqueue(
    database_url: str, tmp_path: Path
) -> None:
    from shoestring.tables import InvalidItem

    app = jobs_app(database_url, tmp_path, worker=False)

    @app.job()
    async def process(thing: object) -> None: ...

    async with running(app):
        with pytest.raises(InvalidItem):
            await process.enqueue(object())
        assert await app.db.fetchall("SELECT id FROM shoestring_jobs") == []


async def test_shutdown_lets_jobs_finish_and_releases_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path, shutdown_timeout=0.5)
    started: list[str] = []
    finished: list[str] = []

    @app.job()
    async def work(seconds: float, label: str) -> None:
        started.append(label)
        await asyncio.sleep(seconds)
        finished.append(label)

    async with running(app):
        quick = await work.enqueue(0.2, "quick")
        stuck = await work.enqueue(30, "stuck")
        await wait_for(lambda: _true(len(started) == 2))
    async with running(jobs_app(database_url, tmp_path, worker=False)) as again:
        assert (await state_of(again, quick))[0] == "succeeded"
        state, attempts, _ = await state_of(again, stuck)
    assert finished == ["quick"]
    assert (state, attempts) == ("queued", 0)  # released, the attempt not counted


async def test_concurrent_workers_run_each_job_once(database_url: str, tmp_path: Path) -> None:
    runs: list[int] = []
    apps = []
    for _ in range(3):
        app = jobs_app(database_url, tmp_path, concurrency=4)

        @app.job(name="count")
        async def count(n: int) -> None:
            await asyncio.sleep(0.001)
            runs.append(n)

        apps.append((app, count))
    job = apps[0][1]
    async with running(apps[0][0]), running(apps[1][0]), running(apps[2][0]):
        for n in range(300):
            await job.enqueue(n)
        await wait_for(lambda: _true(len(runs) >= 300), within=30)
        await asyncio.sleep(0.3)
        outcomes = await apps[0][0].db.fetchall(
            "SELECT state, attempts, COUNT(*) FROM shoestring_jobs GROUP BY state, attempts"
        )
    assert sorted(runs) == list(range(300))
    assert [tuple(row) for row in outcomes] == [("succeeded", 1, 300)]


async def test_a_success_is_not_recorded_once_the_lease_passed_to_another_worker(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path, worker=False)

    @app.job()
    async def noop(n: int) -> None:
        pass

    async with running(app):
        ids = [await noop.enqueue(n) for n in range(3)]
        database = app.db.database
        first = await store.claim(database, ["default"], "worker-a", 3, {}, 60)
        # The second job's lease runs out and another worker takes it.
        await database.write("UPDATE shoestring_jobs SET lease_until = 0 WHERE id = ?", [ids[1]])
        second = await store.claim(database, ["default"], "worker-b", 3, {}, 60)
        recorded = await store.succeed(database, first, "worker-a")
        states = {job_id: await state_of(app, job_id) for job_id in ids}
    assert [job.id for job in second] == [ids[1]]
    assert recorded == {ids[0], ids[2]}
    assert states == {
        ids[0]: ("succeeded", 1, None),
        ids[1]: ("running", 2, None),
        ids[2]: ("succeeded", 1, None),
    }


async def test_each_job_is_leased_for_its_own_timeout(database_url: str, tmp_path: Path) -> None:
    app = jobs_app(database_url, tmp_path, worker=False)

    @app.job(name="quick", timeout=10)
    async def quick() -> None: ...

    @app.job(name="slow", timeout=600)
    async def slow() -> None: ...

    async with running(app):
        await quick.enqueue()
        await slow.enqueue()
        started = time.time()
        leases = {"quick": 10 + LEASE_GRACE, "slow": 600 + LEASE_GRACE}
        claimed = await store.claim(app.db.database, ["default"], "w", 5, leases, 999)
        rows = await app.db.fetchall("SELECT name, lease_until FROM shoestring_jobs")
    assert sorted(job.name for job in claimed) == ["quick", "slow"]
    # A quick job whose worker died is taken again after its own timeout, not the slow one's.
    until = {name: lease_until - started for name, lease_until in rows}
    assert 10 + LEASE_GRACE - 1 < until["quick"] < 10 + LEASE_GRACE + 5
    assert 600 + LEASE_GRACE - 1 < until["slow"] < 600 + LEASE_GRACE + 5


async def test_retry_later_postpones_without_spending_an_attempt(
    database_url: str, tmp_path: Path
) -> None:
    from shoestring.jobs import RetryLater

    app = jobs_app(database_url, tmp_path)
    runs: list[float] = []

    @app.job(retries=0)  # one attempt only: a postponement must not use it up
    async def when_ready() -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RetryLater(0.3, "not ready")

    async with running(app):
        job_id = await when_ready.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "succeeded"))
        assert await state_of(app, job_id) == ("succeeded", 1, None)
    assert len(runs) == 3
    assert all(later - earlier >= 0.3 for earlier, later in itertools.pairwise(runs))


async def test_a_job_whose_worker_died_on_its_last_attempt_is_dead_not_claimed(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path, worker=False)

    @app.job(name="work", retries=1)
    async def work() -> None: ...

    async with running(app):
        database = app.db.database
        last, earlier = await work.enqueue(), await work.enqueue()
        # Both were running when their worker died; `last` on its last attempt (2 of 2).
        await database.write(
            "UPDATE shoestring_jobs SET state = 'running', attempts = 1, worker = 'gone',"
            " lease_until = 0, last_error = NULL"
        )
        await database.write(
            "UPDATE shoestring_jobs SET attempts = 2, last_error = 'OSError: disk full'"
            " WHERE id = ?",
            [last],
        )
        claimed = await store.claim(database, ["default"], "w", 5, {}, 60)
        again = await store.claim(database, ["default"], "w", 5, {}, 60)
        state, attempts, error = await state_of(app, last)
    assert [(job.id, job.attempts) for job in claimed] == [(earlier, 2)]
    assert again == []
    assert (state, attempts) == ("dead", 2)
    assert error == (
        "the worker running its last attempt stopped (lease expired);"
        " the attempt before failed with OSError: disk full"
    )


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_a_failure_whose_message_the_database_refuses_is_still_recorded(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path)

    @app.job(retries=1, backoff=0.01)
    async def nul() -> None:
        raise ValueError("payload had a \x00 byte")

    @app.job(retries=1, backoff=0.01)
    async def unprintable() -> None:
        raise Unprintable("code 7")

    async with running(app):
        nul_id, unprintable_id = await nul.enqueue(), await unprintable.enqueue()
        await wait_for(lambda: _state_is(app, nul_id, "dead"))
        await wait_for(lambda: _state_is(app, unprintable_id, "dead"))
        assert await state_of(app, nul_id) == (
            "dead",
            2,
            "ValueError: payload had a \\x00 byte",
        )
        assert await state_of(app, unprintable_id) == (
            "dead",
            2,
            "Unprintable: Unprintable('code 7')",
        )


async def test_a_cancelled_error_from_the_job_fails_the_attempt_and_frees_the_slot(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path, concurrency=1)
    ran: list[int] = []

    @app.job(retries=1, backoff=0.01)
    async def awaits_a_cancelled_task() -> None:
        task = asyncio.create_task(asyncio.sleep(10))
        task.cancel()
        await task

    @app.job()
    async def after(n: int) -> None:
        ran.append(n)

    async with running(app):
        job_id = await awaits_a_cancelled_task.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "dead"))
        for n in range(3):
            await after.enqueue(n)
        await wait_for(lambda: _true(len(ran) == 3))  # never, with the slot still taken
        assert await state_of(app, job_id) == (
            "dead",
            2,
            "CancelledError: something it awaited was cancelled",
        )
    assert sorted(ran) == [0, 1, 2]


async def test_a_job_s_own_timeout_error_keeps_its_message(
    database_url: str, tmp_path: Path
) -> None:
    app = jobs_app(database_url, tmp_path)

    @app.job(retries=0, timeout=300)
    async def connect() -> None:
        raise TimeoutError("connect to smtp.example.org:25 timed out")

    async with running(app):
        job_id = await connect.enqueue()
        await wait_for(lambda: _state_is(app, job_id, "dead"))
        error = (await state_of(app, job_id))[2]
    assert error == "TimeoutError: connect to smtp.example.org:25 timed out"


def test_error_texts_hold_only_what_both_databases_can_store() -> None:
    # PostgreSQL text takes neither NUL nor a lone surrogate; nothing takes an endless text.
    # ascii(): a report of this failing, lone surrogate and all, would crash pytest-xdist.
    text = error_text(ValueError("a\x00b \udc80"))
    assert ascii(text) == ascii("ValueError: a\\x00b \\udc80")
    assert error_text(Unprintable("code 7")) == "Unprintable: Unprintable('code 7')"
    assert error_text(KeyError()) == "KeyError"
    assert len(error_text(ValueError("x" * 10_000))) == store.MAX_ERROR_CHARS
