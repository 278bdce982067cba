"""Job throughput and enqueue-to-start latency, SQLite and PostgreSQL.

    python bench/jobs.py [--jobs 5000] [--backend sqlite|postgresql|both]

Throughput: 1 or 4 worker processes (each `jobs.concurrency` 8) are started
and ready; then no-op jobs are enqueued (in transactions of 500) and drained;
jobs completed per second from the first enqueue to the last success. Baseline
in the same run: one raw-driver loop issuing, per job, the same three commits
a job costs (insert, claim, finish): what the database alone allows for this
queue shape. Latency: at idle, one job at a time, time from `enqueue()` being
called to the job function starting, inside one process (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import postgres_schema

from shoestring import App, Settings
from shoestring.config import DatabaseSettings, JobsSettings

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shoestring import App, Settings
    from shoestring.config import DatabaseSettings, JobsSettings
    app = App("benchjobs", settings=Settings(data_dir=Path(sys.argv[2]),
        database=DatabaseSettings(url=sys.argv[1]), jobs=JobsSettings(concurrency=8, poll_interval=0.05)))

    @app.job(name="noop")
    async def noop(n: int) -> None:
        pass

    async def main() -> None:
        await app.services.start_all()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def make_app(url: str, data_dir: Path, worker: bool) -> App:
    settings = Settings(
        data_dir=data_dir,
        database=DatabaseSettings(url=url),
        jobs=JobsSettings(worker=worker, concurrency=8, poll_interval=0.05),
    )
    return App("benchjobs", settings=settings)


async def throughput(url: str, data_dir: Path, total: int, processes: int) -> tuple[float, float]:
    producer = make_app(url, data_dir, worker=False)

    @producer.job(name="noop")
    async def noop(n: int) -> None:
        pass

    await producer.services.start_all()
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(data_dir)], stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None
        await asyncio.to_thread(worker.stdout.readline)  # "ready"
    started = time.perf_counter()
    for start in range(0, total, 500):
        async with producer.tables.transaction():
            for n in range(start, min(start + 500, total)):
                await noop.enqueue(n)
    enqueue_rate = total / (time.perf_counter() - started)
    try:
        while True:
            row = await producer.db.fetchone(
                "SELECT count(*) FROM shoestring_jobs WHERE state = 'succeeded'"
            )
            if row and row[0] >= total:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        async with producer.db.transaction() as tx:
            await tx.execute("DELETE FROM shoestring_jobs")
        await producer.services.stop_all()
    return enqueue_rate, total / elapsed


def raw_baseline(url: str, total: int) -> float:
    """Jobs/s when each job is just its three commits, issued back to back by one client."""
    sqlite = url.startswith("sqlite")
    if sqlite:
        import sqlite3

        connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        p = "?"
    else:
        import psycopg

        connection = psycopg.connect(url, autocommit=True)
        p = "%s"
    connection.execute(
        "CREATE TABLE raw_jobs (id TEXT PRIMARY KEY, state TEXT, lease DOUBLE PRECISION)"
    )
    started = time.perf_counter()
    for n in range(total):
        job_id = f"j{n}"
        connection.execute(f"INSERT INTO raw_jobs VALUES ({p}, 'queued', NULL)", (job_id,))
        connection.execute(
            f"UPDATE raw_jobs SET state = 'running', lease = {p} WHERE id = {p}",
            (time.time(), job_id),
        )
        connection.execute(f"UPDATE raw_jobs SET state = 'succeeded' WHERE id = {p}", (job_id,))
    elapsed = time.perf_counter() - started
    connection.execute("DROP TABLE raw_jobs")
    connection.close()
    return total / elapsed


async def idle_latency(url: str, data_dir: Path, samples: int) -> tuple[float, float]:
    app = make_app(url, data_dir, worker=True)
    started_at: asyncio.Queue[float] = asyncio.Queue()

    @app.job(name="ping")
    async def ping() -> None:
        started_at.put_nowait(time.perf_counter())

    await app.services.start_all()
    latencies = []
    try:
        for _ in range(samples):
            await asyncio.sleep(0.02)  # idle between jobs
            before = time.perf_counter()
            await ping.enqueue()
            latencies.append((await started_at.get() - before) * 1000)
    finally:
        await app.services.stop_all()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


async def bench(backend: str, total: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        data_dir = Path(tmp)
        if backend == "sqlite":
            url = f"sqlite:///{data_dir / 'jobs.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        print(f"\n{backend}: {total} no-op jobs")
        p50, p99 = await idle_latency(url, data_dir, 200)
        print(f"  enqueue -> start at idle (same process): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        raw = await asyncio.to_thread(raw_baseline, url, total)
        print(f"  baseline, the same commits from one raw-driver loop: {raw:,.0f} jobs/s")
        for processes in (1, 4):
            enqueued, completed = await throughput(url, data_dir, total, processes)
            print(
                f"  {processes} worker process(es): enqueued {enqueued:,.0f}/s, "
                f"completed {completed:,.0f}/s ({completed / raw:.2f} x baseline)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    import uvloop  # the event loop `shoestring run` uses

    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        uvloop.run(bench(backend, args.jobs))


if __name__ == "__main__":
    main()
