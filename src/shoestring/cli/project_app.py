"""Load the project's App in a CLI command and open its data services."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from shoestring.app import App
from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.jobs import JobError
from shoestring.loader import load_app
from shoestring.tables import TableError

T = TypeVar("T")


def require_project(directory: Path) -> Path:
    """`directory` if it holds a project (a shoestring.toml or an app.py); else a usage error."""
    if (directory / "shoestring.toml").is_file() or (directory / "app.py").is_file():
        return directory
    raise click.BadParameter(
        f"{directory.resolve()} is not a shoestring project: it has no shoestring.toml and no "
        "app.py. Run the command in your project's directory or name it (--project DIR); "
        "`shoestring new NAME` makes a new project.",
        param_hint="the project directory",
    )


_DIRECTORY = click.Path(exists=True, file_okay=False, path_type=Path)

project_option = click.option(
    "--project",
    "project_dir",
    default=".",
    show_default=True,
    type=_DIRECTORY,
    callback=lambda ctx, param, value: require_project(value),
    help="The project directory.",
)


def project_dir_argument(command: Callable[..., T]) -> Callable[..., T]:
    """The project directory as `[DIR]` or as `--project DIR`, like every other command.

    The command gets `project_dir` and checks it is a project itself (with
    `require_project`): `config --reference` needs none.
    """

    @functools.wraps(command)
    def with_project_dir(
        *args: Any, directory: Path | None, project: Path | None, **kwargs: Any
    ) -> T:
        if (
            directory is not None
            and project is not None
            and directory.resolve() != project.resolve()
        ):
            raise click.UsageError("name the project directory once: as DIR or as --project DIR")
        return command(*args, project_dir=project or directory or Path("."), **kwargs)

    with_project_dir = click.option(
        "--project", type=_DIRECTORY, help="The project directory (the same as DIR)."
    )(with_project_dir)
    return click.argument("directory", metavar="[DIR]", required=False, type=_DIRECTORY)(
        with_project_dir
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
