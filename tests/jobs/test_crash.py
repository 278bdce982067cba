"""Real worker processes: kill -9 mid-job, and many workers sharing one queue."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.backends import make_app, running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shoestring import App, Settings
    from shoestring.config import DatabaseSettings, JobsSettings

    app = App("crashjobs", settings=Settings(
        data_dir=Path(sys.argv[2]), database=DatabaseSettings(url=sys.argv[1]),
        jobs=JobsSettings(poll_interval=0.05, concurrency=int(sys.argv[4]))))
    effects = app.table("effects")

    @app.job(name="slow", timeout=1, retries=2)
    async def slow(n: int) -> None:
        print("started", n, flush=True)
        await asyncio.sleep(float(sys.argv[3]))
        await effects.update(f"e{n}", increment={"runs": 1})
        print("finished", n, flush=True)

    async def main() -> None:
        await app.services.start_all()
        if len(sys.argv) > 5:
            for n in range(int(sys.argv[5])):
                await slow.enqueue(n)
            print("enqueued", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def start_worker(
    url: str, tmp_path: Path, sleep: float, concurrency: int, enqueue: int = 0
) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", WORKER, url, str(tmp_path / "data"), str(sleep), str(concurrency)]
    if enqueue:
        args.append(str(enqueue))
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def read_until(process: subprocess.Popen[str], word: str, timeout: float = 20) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(word):
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"worker never printed {word!r}")


async def test_kill_9_mid_job_runs_it_again_exactly_once(database_url: str, tmp_path: Path) -> None:
    first = start_worker(database_url, tmp_path, sleep=0.8, concurrency=1, enqueue=1)
    read_until(first, "started")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = start_worker(database_url, tmp_path, sleep=0.1, concurrency=1)
    app = make_app(database_url, tmp_path)
    effects = app.table("effects")
    try:
        read_until(second, "finished", timeout=30)  # after the dead worker's lease expires
        async with running(app):
            deadline = time.monotonic() + 10
            row = None
            while time.monotonic() < deadline:
                row = await app.db.fetchone("SELECT state, attempts FROM shoestring_jobs")
                if row and row[0] == "succeeded":
                    break
                time.sleep(0.05)
            assert row == ("succeeded", 2)
            assert (await effects.get("e0")) == {"id": "e0", "runs": 1}
    finally:
        second.kill()
        second.wait()


async def test_four_worker_processes_run_each_job_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    database_url = postgres_url
    total = 10_000
    # Three workers waiting, then a fourth that enqueues as they already claim.
    others = [start_worker(database_url, tmp_path, sleep=0, concurrency=8) for _ in range(3)]
    producer = start_worker(database_url, tmp_path, sleep=0, concurrency=8, enqueue=total)
    read_until(producer, "enqueued", timeout=60)
    app = make_app(database_url, tmp_path)
    app.table("effects")
    try:
        async with running(app):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = await app.db.fetchone(
                    "SELECT count(*) FROM shoestring_jobs WHERE state = 'succeeded'"
                )
                if row and row[0] == total:
                    break
                time.sleep(0.2)
            runs = await app.db.fetchall('SELECT doc FROM "tbl_effects"')
    finally:
        for process in [producer, *others]:
            process.kill()
            process.wait()
    assert len(runs) == total
    assert all('"runs":1' in doc for (doc,) in runs), "a job ran twice"
