"""Load the project's App in a CLI command and open its data services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import click

from shoestring.app import App
from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.jobs import JobError
from shoestring.loader import load_app
from shoestring.tables import TableError

T = TypeVar("T")

project_option = click.option(
    "--project",
    "project_dir",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The project directory.",
)


def load_project(project_dir: Path) -> App:
    settings = load_settings(project_dir)
    app = load_app(project_dir.resolve(), settings.project.app)
    app.configure(settings)
    return app


@asynccontextmanager
async def opened(app: App) -> AsyncIterator[App]:
    # Only the data services: a CLI command must not start workers or servers.
    app.mail  # noqa: B018 - registers the queue's and outbox's migrations even if unused
    await app.db.start()
    await app.tables.start()
    try:
        yield app
    finally:
        await app.tables.stop()
        await app.db.stop()


def run_with_app(project_dir: Path, action: Callable[[App], Awaitable[T]]) -> T:
    app = load_project(project_dir)

    async def main() -> T:
        async with opened(app):
            return await action(app)

    try:
        return asyncio.run(main())
    except (TableError, JobError, KeyError) as exc:
        raise ShoestringError(str(exc).strip("'\"")) from None
