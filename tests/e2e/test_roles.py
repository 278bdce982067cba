"""Roles split across processes: web enqueues, a headless worker runs the jobs."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

APP = """
from shoestring import App, Request

app = App("roles")
done = app.table("done")

@app.job(name="mark")
async def mark(key: str) -> None:
    await done.put({"id": key})

@app.route("/mark/{key}", methods=["POST"])
async def enqueue(request: Request) -> dict[str, str]:
    return {"job": await mark.enqueue(request.path_params["key"])}

@app.route("/done/{key}")
async def check(request: Request) -> dict[str, bool]:
    return {"done": await done.get(request.path_params["key"]) is not None}
"""


def test_web_enqueues_and_a_separate_worker_process_runs_it(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(APP)
    (project / "shoestring.toml").write_text("[jobs]\npoll_interval = 0.1\n")
    web = start(project, "--role", "web")
    web.wait_ready()
    assert httpx.post(web.base_url + "/mark/a").status_code == 200
    time.sleep(1.0)
    assert httpx.get(web.base_url + "/done/a").json() == {"done": False}  # no worker yet

    worker = start(project, "--role", "worker")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if httpx.get(web.base_url + "/done/a").json() == {"done": True}:
            break
        time.sleep(0.1)
    assert httpx.get(web.base_url + "/done/a").json() == {"done": True}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{worker.base_url}/_health", timeout=1)  # the worker serves no HTTP
    assert worker.terminate() == 0
    assert web.terminate() == 0


TICKS = """
from shoestring import App

app = App("ticks")

@app.every(seconds=1, name="tick")
async def tick() -> None: ...
"""


def test_three_processes_fire_each_tick_of_a_schedule_once(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(TICKS)
    (project / "shoestring.toml").write_text("[jobs]\npoll_interval = 0.1\n")
    # Three server processes, each with its own scheduler, on the one database.
    server = start(project, "--workers", "3")
    server.wait_ready()
    time.sleep(5.5)
    assert server.terminate() == 0, server.log
    with sqlite3.connect(project / "data" / "shoestring.db") as database:
        jobs = database.execute(
            "SELECT run_at, state FROM shoestring_jobs WHERE name = 'tick' ORDER BY run_at"
        ).fetchall()
    times = [run_at for run_at, _ in jobs]
    # One job a second for the 5.5 s: three schedulers each firing would make three times as many.
    assert 4 <= len(jobs) <= 7, jobs
    assert all(later - earlier > 0.5 for earlier, later in itertools.pairwise(times))
    ran = [state for _, state in jobs].count("succeeded")
    assert ran >= len(jobs) - 1  # each ran, but perhaps the last, cut by the stop
