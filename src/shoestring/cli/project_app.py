"""Load the project's App in a CLI command and open its data services."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.config import load_settings
from shoestring.db.database import Database
from shoestring.errors import ShoestringError
from shoestring.jobs import JobError
from shoestring.loader import load_app
from shoestring.tables import TableError

T = TypeVar("T")


def require_project(directory: Path) -> Path:
    """`directory` if it holds a project (a shoestring.toml, an app.py or the default data
    directory); else a usage error."""
    if any((directory / name).exists() for name in ("shoestring.toml", "app.py", "data")):
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
# For a command that may make a project's data where there is none yet (restore).
any_directory_option = click.option(
    "--project",
    "project_dir",
    default=".",
    show_default=True,
    type=_DIRECTORY,
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


_ID_PREFIX = re.compile(r"[0-9a-f]{4,31}")


async def full_id(database: Database, table: str, given: str) -> str:
    """`given`, or the one id in `table` that starts with it (ids are long: a listing may
    show their start). Several ids starting so: an error asking for more of it."""
    if not _ID_PREFIX.fullmatch(given):
        return given
    rows = await database.fetchall(
        f"SELECT id FROM {table} WHERE id LIKE ? ORDER BY id LIMIT 2",  # noqa: S608 - our table
        [given + "%"],
    )
    if len(rows) > 1:
        raise ShoestringError(f"several ids start with {given}: give more of it")
    return str(rows[0][0]) if rows else given


def id_column(table: RichTable) -> None:
    """An id column that is never cut: the id is what the next command needs."""
    table.add_column("id", no_wrap=True, min_width=32)


def clipped(text: str | None, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis where it was cut."""
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"
