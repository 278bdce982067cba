"""`shoestring jobs` and `shoestring schedules`: see and steer the queue."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.cli.project_app import (
    clipped,
    full_id,
    id_column,
    project_option,
    require_project,
    run_with_app,
)
from shoestring.jobs import JobNotFound, store


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.group("jobs")
def jobs_group() -> None:
    """List, retry and cancel the app's background jobs."""


@jobs_group.command("ls")
@project_option
@click.option(
    "--state",
    type=click.Choice([*store.STATES, "failed"]),
    help="Only jobs in this state (`failed` is another name for `dead`).",
)
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
    help="List at most this many jobs.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job instead of a table.")
def jobs_ls(project_dir: Path, state: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first; `--state dead` shows what gave up, with its error."""
    if state == "failed":
        state = "dead"

    async def action(app: App) -> list[store.JobRecord]:
        return await store.records(app.db.database, state, limit)

    records = run_with_app(project_dir, action)
    if as_json:
        for record in records:
            click.echo(json.dumps(dataclasses.asdict(record)))
        return
    table = RichTable()
    id_column(table)
    for column in ("job", "state", "attempts", "run at"):
        table.add_column(column)
    table.add_column("last error", overflow="fold")
    for record in records:
        table.add_row(
            record.id,
            record.name,
            record.state,
            f"{record.attempts}/{record.max_attempts}",
            _when(record.run_at),
            clipped(record.last_error, 200),
        )
    Console().print(table)
    if not records:
        click.echo("no jobs" + (f" in state {state}" if state else ""), err=True)


@jobs_group.command("retry")
@project_option
@click.argument("job_id")
def jobs_retry(project_dir: Path, job_id: str) -> None:
    """Queue a dead or cancelled job again, with its attempts reset."""

    async def action(app: App) -> str:
        found = await full_id(app.db.database, "shoestring_jobs", job_id)
        if not await store.retry(app.db.database, found):
            raise JobNotFound(f"no dead or cancelled job {job_id}; see `shoestring jobs ls`")
        return found

    click.echo(f"job {run_with_app(project_dir, action)} queued again")


@jobs_group.command("cancel")
@project_option
@click.argument("job_id")
def jobs_cancel(project_dir: Path, job_id: str) -> None:
    """Cancel a queued job (one already running finishes its attempt)."""

    async def action(app: App) -> str:
        found = await full_id(app.db.database, "shoestring_jobs", job_id)
        if not await store.cancel(app.db.database, found):
            raise JobNotFound(f"no queued job {job_id}; see `shoestring jobs ls --state queued`")
        return found

    click.echo(f"job {run_with_app(project_dir, action)} cancelled")


@click.group("schedules", invoke_without_command=True)
@click.option(
    "--project", "project_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The project directory, for `schedules` alone [default: .].",
)  # fmt: skip
@click.pass_context
def schedules_group(ctx: click.Context, project_dir: Path | None) -> None:
    """The app's schedules; alone, the same as `schedules ls`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedules_ls, project_dir=require_project(project_dir or Path(".")))


@schedules_group.command("ls")
@project_option
def schedules_ls(project_dir: Path) -> None:
    """List the app's schedules with their next and last run times."""

    async def action(app: App) -> list[tuple[str, str, str, str]]:
        rows = []
        for schedule in app.jobs.schedules:
            row = await app.db.fetchone(
                "SELECT spec, next_run, last_run FROM shoestring_schedules WHERE name = ?",
                [schedule.name],
            )
            if row is None or row[0] != schedule.spec:
                next_run, last_run = schedule.next_after(time.time()), None
            else:
                next_run, last_run = row[1], row[2]
            rows.append((schedule.name, schedule.describe(), _when(next_run), _when(last_run)))
        return rows

    table = RichTable("schedule", "when", "next run", "last run")
    for row in run_with_app(project_dir, action):
        table.add_row(*row)
    Console().print(table)
