"""The `shoestring` command: one module per command group, errors printed for people."""

from __future__ import annotations

import difflib
import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from shoestring import __version__
from shoestring.errors import AppLoadError, ConfigError, ShoestringError

err_console = Console(stderr=True, highlight=False)

# Exit statuses: 1 for a failure at run time, 2 for a problem the user must
# fix in their project or command line (the same as click's usage errors).
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Each command's module is imported only when that command runs (or `--help`
# lists them all): `shoestring run` does not pay for deploy's SSH client or
# mail's DNS resolver, about half of its cold start.
COMMANDS = {
    "new": "project:new_command",
    "run": "serve:run_command",
    "dev": "serve:dev_command",
    "config": "config:config_command",
    "tables": "tables:tables_group",
    "db": "tables:db_group",
    "jobs": "jobs:jobs_group",
    "schedules": "jobs:schedules_group",
    "mail": "mail:mail_group",
    "storage": "storage:storage_group",
    "keys": "keys:keys_group",
    "sites": "sites:sites_group",
    "secrets": "secrets:secrets_group",
    "backup": "deploy:backup_command",
    "restore": "deploy:restore_command",
    "migrate": "deploy:migrate_command",
    "deploy": "deploy:deploy_command",
    "rollback": "deploy:rollback_command",
    "releases": "deploy:releases_command",
    "logs": "deploy:logs_command",
    "status": "deploy:status_command",
    "ssh": "deploy:ssh_command",
    "destroy": "deploy:destroy_command",
}


class ShoestringGroup(click.Group):
    """Loads commands on demand; prints ShoestringError as a short message, not a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            if ctx.resilient_parsing:
                return None
            close = difflib.get_close_matches(name, COMMANDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else " See `shoestring --help`."
            raise click.UsageError(f"No such command '{name}'.{hint}", ctx)
        module, attribute = COMMANDS[name].split(":")
        command: click.Command = getattr(
            importlib.import_module(f"shoestring.cli.{module}"), attribute
        )
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShoestringError as exc:
            sys.exit(report(exc))


def report(exc: ShoestringError) -> int:
    """Print `exc` for a person, without shoestring's own traceback; the exit status it calls for."""
    if isinstance(exc, ConfigError):
        _print_error("Configuration error", exc)
        err_console.print("Fix the values above, then run the command again.")
        return EXIT_USAGE
    if isinstance(exc, AppLoadError):
        _print_error("Cannot load the app:", exc)
        if exc.__cause__ is not None:
            err_console.print(Text(_where_it_failed(exc.__cause__)), soft_wrap=True)
        return EXIT_USAGE
    _print_error("Error:", exc)
    return EXIT_FAILURE


def _print_error(title: str, exc: Exception) -> None:
    # The message is plain text: config keys like `[project]` are not markup.
    err_console.print(Text.assemble((title, "bold red"), " ", str(exc)), soft_wrap=True)


def _where_it_failed(error: BaseException) -> str:
    """The traceback of an error raised while importing the app, without the frames of
    shoestring and of Python's import machinery (a syntax error: its line, marked)."""
    package = str(Path(__file__).resolve().parents[1])
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith((package, "<frozen ", importlib.__path__[0]))
    ]
    lines = (
        ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    )
    return "".join(lines + traceback.format_exception_only(error)).rstrip()


@click.group(cls=ShoestringGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="shoestring")
def main() -> None:
    """shoestring: functions, storage, tables, mail, sites and jobs for a side
    project, on one cheap Linux box.

    Start with `shoestring new NAME`, then `shoestring dev NAME`.
    """
