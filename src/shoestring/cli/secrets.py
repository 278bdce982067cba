"""`shoestring secrets`: values the app needs that must never reach git or the database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from shoestring.cli.project_app import project_option
from shoestring.config import load_settings, project_data_dir
from shoestring.db.database import DatabaseError
from shoestring.db.migrations import migrate
from shoestring.db.service import open_database
from shoestring.deploy.vault import DeploySecrets
from shoestring.errors import ConfigError, ShoestringError
from shoestring.secret_checks import MIGRATIONS, forget
from shoestring.secrets import Secrets, environment_variable, is_setting


def _secrets(project_dir: Path, deploy: bool = False) -> Secrets | DeploySecrets:
    if deploy:
        settings = load_settings(project_dir)
        project = settings.project.name or project_dir.resolve().name
        return DeploySecrets.of(settings, project)
    # Not the whole settings: a setting kept as a secret that is now invalid
    # must not stop `secrets ls` and `secrets rm` from reaching it.
    return Secrets(project_data_dir(project_dir) / "secrets")


deploy_option = click.option(
    "--deploy",
    is_flag=True,
    help="The deploy host's secrets: kept here encrypted in <data_dir>/deploy-secrets/ (the "
    "key in ~/.config/shoestring/deploy-keys/) and written to the host by `shoestring "
    "deploy`, readable only by the app's user.",
)


@click.group("secrets")
def secrets_group() -> None:
    """Set, list and remove the project's secrets.

    The app reads them with `app.secrets.get(NAME)`. They live in
    <data_dir>/secrets/, readable only by their owner; SHOESTRING_SECRET_<NAME>
    in the environment overrides a stored one. With --deploy, the commands
    act on the values `shoestring deploy` delivers to the host instead.

    A secret named like a setting's environment variable
    (SHOESTRING_MAIL__TRANSPORT) sets that setting, over shoestring.toml: the
    way to keep a relay's password or an S3 key out of git.
    """


@secrets_group.command("set")
@project_option
@deploy_option
@click.argument("name")
def secrets_set(project_dir: Path, name: str, deploy: bool) -> None:
    """Store the secret NAME, asked for without echo (or read from stdin when piped).

    Never pass a secret as an argument: it would stay in the shell's history
    and in the process list.
    """
    if sys.stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
    if is_setting(name):
        # Refused before it is stored: an invalid setting would stop every command.
        load_settings(project_dir, new_secrets={name: value.strip()})
    _secrets(project_dir, deploy).set(name, value)
    if not deploy:
        _forget_fingerprint(project_dir, name)
    click.echo(f"stored secret {name}" + (" for the deploy host" if deploy else ""))


@secrets_group.command("ls")
@project_option
@deploy_option
def secrets_ls(project_dir: Path, deploy: bool) -> None:
    """List the names of stored secrets (never their values)."""
    for name in _secrets(project_dir, deploy).names():
        click.echo(name)


@secrets_group.command("rm")
@project_option
@deploy_option
@click.argument("name")
def secrets_rm(project_dir: Path, name: str, deploy: bool) -> None:
    """Remove the stored secret NAME (with --deploy: from the next deploy on; the host keeps
    the value it has until `shoestring ssh` removes it)."""
    if not _secrets(project_dir, deploy).delete(name):
        raise ShoestringError(
            f"no stored secret {name!r} (one set as {environment_variable(name)} stays set)"
        )
    if not deploy:
        _forget_fingerprint(project_dir, name)
    click.echo(f"removed secret {name}")


def _forget_fingerprint(project_dir: Path, name: str) -> None:
    """Let the app record the secret's new value on its next use (see secret_checks.py)."""

    async def forget_it() -> None:
        settings = load_settings(project_dir)
        database = open_database(settings.database, settings.data_dir)
        await database.open()
        try:
            await migrate(database, MIGRATIONS)
            await forget(database, name)
        finally:
            await database.close()

    try:
        asyncio.run(forget_it())
    except ConfigError as exc:
        click.echo(f"warning: {exc}", err=True)
    except DatabaseError as exc:
        click.echo(
            f"warning: the database could not be reached ({exc}); if the app used the old "
            f"value, it reports {name} as differing until `shoestring secrets set {name}` "
            "runs again with the database up",
            err=True,
        )
