from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from shoestring.cli.project_app import load_project, opened
from tests.e2e.conftest import run_cli as shoestring

APP = """
from shoestring import App

app = App("jobsdemo")

@app.job(retries=0)
async def explode(n: int) -> None:
    raise RuntimeError("boom")

@app.schedule("0 3 * * *", timezone="Europe/Berlin")
async def nightly() -> None: ...
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def dead_job(project: Path) -> str:
    """Enqueue a job and mark it dead as the worker would after its last attempt."""

    async def make() -> str:
        app = load_project(project)
        async with opened(app):
            job_id = await app.jobs.definitions["app.explode"].enqueue(1)
            await app.db.database.write(
                "UPDATE shoestring_jobs SET state = 'dead', last_error = 'RuntimeError: boom'"
            )
            return job_id

    return asyncio.run(make())


def listed(project: Path, state: str) -> list[dict[str, object]]:
    result = shoestring(project, "jobs", "ls", "--state", state, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_ls_retry_and_cancel(project: Path) -> None:
    job_id = dead_job(project)
    (dead,) = listed(project, "dead")
    assert dead["id"] == job_id and dead["last_error"] == "RuntimeError: boom"
    assert dead["name"] == "app.explode"

    retried = shoestring(project, "jobs", "retry", job_id)
    assert retried.returncode == 0, retried.stderr
    assert [job["id"] for job in listed(project, "queued")] == [job_id]

    assert shoestring(project, "jobs", "cancel", job_id).returncode == 0
    assert [job["id"] for job in listed(project, "cancelled")] == [job_id]
    assert listed(project, "dead") == []

    again = shoestring(project, "jobs", "cancel", job_id)
    assert again.returncode == 1
    assert "no queued job" in again.stderr


@pytest.mark.parametrize("command", [["schedules", "ls"], ["schedules"]])
def test_schedules_lists_next_runs(project: Path, command: list[str]) -> None:
    result = shoestring(project, *command)
    assert result.returncode == 0, result.stderr
    assert "app.nightly" in result.stdout
    assert "0 3 * * * (Europe/Berlin)" in result.stdout
    assert "UTC" in result.stdout


def test_failed_is_another_name_for_dead(project: Path) -> None:
    job_id = dead_job(project)
    assert [job["id"] for job in listed(project, "failed")] == [job_id]


def test_jobs_ls_works_for_an_app_without_jobs(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from shoestring import App\napp = App('nojobs')\n")
    result = shoestring(tmp_path, "jobs", "ls")
    assert result.returncode == 0, result.stderr
    assert "no jobs" in result.stderr


def test_the_table_shows_whole_ids_and_a_start_of_one_is_enough(project: Path) -> None:
    job_id = dead_job(project)
    table = shoestring(project, "jobs", "ls", env={"COLUMNS": "80"})
    assert job_id in table.stdout  # whole, on an 80-column terminal, for the next command
    retried = shoestring(project, "jobs", "retry", job_id[:8])
    assert retried.returncode == 0 and f"job {job_id} queued again" in retried.stdout
    cancelled = shoestring(project, "jobs", "cancel", job_id[:8])
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    unknown = shoestring(project, "jobs", "cancel", "ffff0000")
    assert unknown.returncode == 1 and "no queued job ffff0000" in unknown.stderr
