"""`shoestring keys`: access keys for the S3 API (boto3, aws cli, rclone)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.cli.project_app import load_project, project_option
from shoestring.errors import ShoestringError
from shoestring.storage.credentials import NewKey
from shoestring.storage.errors import InvalidBucketName
from shoestring.storage.keys import check_bucket_name

T = TypeVar("T")


def run_with_storage(
    project_dir: Path, action: Callable[[App], Awaitable[T]], *, open_backend: bool = False
) -> T:
    """Run `action` with the database (and, if asked, the storage backend) open; no server."""
    app = load_project(project_dir)

    async def main() -> T:
        storage = app.storage  # registers the keys' migrations before the database starts
        await app.db.start()
        try:
            if not open_backend:
                return await action(app)
            await storage.backend.open()
            try:
                return await action(app)
            finally:
                await storage.backend.close()
        finally:
            await app.db.stop()

    return asyncio.run(main())


@click.group("keys")
def keys_group() -> None:
    """Create, list and delete access keys for the S3 API at /_s3."""


@keys_group.command("create")
@project_option
@click.option(
    "--bucket",
    "buckets",
    multiple=True,
    metavar="NAME",
    help="A bucket the key may use (repeatable); without it, every bucket.",
)
@click.option("--read", is_flag=True, help="Allow reading and listing.")
@click.option("--write", is_flag=True, help="Allow writing, deleting and creating buckets.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print {access_key_id, secret_access_key} as JSON."
)
def keys_create(
    project_dir: Path, buckets: tuple[str, ...], read: bool, write: bool, as_json: bool
) -> None:
    """Create an access key and print its secret: this is the only time it is shown.

    Without --read or --write, the key may do both.
    """
    if not (read or write):
        read = write = True
    for bucket in buckets:
        try:
            check_bucket_name(bucket)
        except InvalidBucketName as exc:
            raise click.BadParameter(str(exc), param_hint="--bucket") from None

    async def create(app: App) -> tuple[NewKey, str]:
        created = await app.storage.keys.create(buckets or ("*",), read=read, write=write)
        return created, app.storage.public_url()

    created, endpoint = run_with_storage(project_dir, create)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "access_key_id": created.key.access_key_id,
                    "secret_access_key": created.secret_access_key,
                    "endpoint_url": endpoint,
                }
            )
        )
        return
    click.echo(f"access key id:     {created.key.access_key_id}")
    click.echo(f"secret access key: {created.secret_access_key}")
    click.echo(f"endpoint url:      {endpoint}")
    click.echo("Store the secret now: it is kept encrypted and cannot be shown again.", err=True)


@keys_group.command("ls")
@project_option
def keys_ls(project_dir: Path) -> None:
    """List access keys (ids, buckets and rights; never secrets)."""
    keys = run_with_storage(project_dir, lambda app: app.storage.keys.list())
    table = RichTable("access key id", "buckets", "read", "write", "created")
    for key in keys:
        created = datetime.fromtimestamp(key.created, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            key.access_key_id, ", ".join(key.buckets), "yes" if key.read else "no",
            "yes" if key.write else "no", created,
        )  # fmt: skip
    Console().print(table)


@keys_group.command("rm")
@project_option
@click.argument("access_key_id")
def keys_rm(project_dir: Path, access_key_id: str) -> None:
    """Delete the key ACCESS_KEY_ID; requests signed with it fail within seconds."""
    if not run_with_storage(project_dir, lambda app: app.storage.keys.delete(access_key_id)):
        raise ShoestringError(f"no access key {access_key_id!r}; see `shoestring keys ls`")
    click.echo(f"deleted {access_key_id}", err=True)
