"""`shoestring secrets`: values the app needs that must never reach git or the database."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shoestring.cli.project_app import project_option
from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.secrets import Secrets, environment_variable


def _secrets(project_dir: Path) -> Secrets:
    return Secrets(load_settings(project_dir).data_dir / "secrets")


@click.group("secrets")
def secrets_group() -> None:
    """Set, list and remove the project's secrets.

    The app reads them with `app.secrets.get(NAME)`. They live in
    <data_dir>/secrets/, readable only by their owner; SHOESTRING_SECRET_<NAME>
    in the environment overrides a stored one.
    """


@secrets_group.command("set")
@project_option
@click.argument("name")
def secrets_set(project_dir: Path, name: str) -> None:
    """Store the secret NAME, asked for without echo (or read from stdin when piped).

    Never pass a secret as an argument: it would stay in the shell's history
    and in the process list.
    """
    if sys.stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
    _secrets(project_dir).set(name, value)
    click.echo(f"stored secret {name}")


@secrets_group.command("ls")
@project_option
def secrets_ls(project_dir: Path) -> None:
    """List the names of stored secrets (never their values)."""
    for name in _secrets(project_dir).names():
        click.echo(name)


@secrets_group.command("rm")
@project_option
@click.argument("name")
def secrets_rm(project_dir: Path, name: str) -> None:
    """Remove the stored secret NAME."""
    if not _secrets(project_dir).delete(name):
        raise ShoestringError(
            f"no stored secret {name!r} (one set as {environment_variable(name)} stays set)"
        )
    click.echo(f"removed secret {name}")
