"""The `shoestring` command: one module per command group, errors printed for people."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from shoestring import __version__
from shoestring.cli.config import config_command
from shoestring.cli.deploy import (
    backup_command,
    deploy_command,
    destroy_command,
    logs_command,
    migrate_command,
    releases_command,
    restore_command,
    rollback_command,
    ssh_command,
    status_command,
)
from shoestring.cli.jobs import jobs_group, schedules_command
from shoestring.cli.keys import keys_group
from shoestring.cli.mail import mail_group
from shoestring.cli.project import new_command
from shoestring.cli.secrets import secrets_group
from shoestring.cli.serve import dev_command, run_command
from shoestring.cli.sites import sites_group
from shoestring.cli.storage import storage_group
from shoestring.cli.tables import db_group, tables_group
from shoestring.errors import AppLoadError, ConfigError, ShoestringError

err_console = Console(stderr=True, highlight=False)

# Exit statuses: 1 for a failure at run time, 2 for a problem the user must
# fix in their project or command line (the same as click's usage errors).
EXIT_FAILURE = 1
EXIT_USAGE = 2


class ShoestringGroup(click.Group):
    """Prints ShoestringError as a short message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            err_console.print(
                f"[bold red]Configuration error[/] {exc}", markup=True, soft_wrap=True
            )
            err_console.print("Fix the values above, then run the command again.")
            sys.exit(EXIT_USAGE)
        except AppLoadError as exc:
            _print_error("Cannot load the app:", exc)
            if exc.__cause__ is not None:
                err_console.print_exception(show_locals=False, max_frames=8)
            sys.exit(EXIT_USAGE)
        except ShoestringError as exc:
            _print_error("Error:", exc)
            sys.exit(EXIT_FAILURE)


def _print_error(title: str, exc: Exception) -> None:
    # The message is plain text: config keys like `[project]` are not markup.
    err_console.print(Text.assemble((title, "bold red"), " ", str(exc)), soft_wrap=True)


@click.group(cls=ShoestringGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="shoestring")
def main() -> None:
    """shoestring: functions, storage, tables, mail, sites and jobs for a side
    project, on one cheap Linux box.

    Start with `shoestring new NAME`, then `shoestring dev NAME`.
    """


main.add_command(new_command)
main.add_command(run_command)
main.add_command(dev_command)
main.add_command(config_command)
main.add_command(tables_group)
main.add_command(db_group)
main.add_command(jobs_group)
main.add_command(schedules_command)
main.add_command(mail_group)
main.add_command(storage_group)
main.add_command(keys_group)
main.add_command(sites_group)
main.add_command(secrets_group)
main.add_command(backup_command)
main.add_command(restore_command)
main.add_command(migrate_command)
main.add_command(deploy_command)
main.add_command(rollback_command)
main.add_command(releases_command)
main.add_command(logs_command)
main.add_command(status_command)
main.add_command(ssh_command)
main.add_command(destroy_command)
