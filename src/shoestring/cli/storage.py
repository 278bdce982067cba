"""`shoestring storage`: buckets and objects from a terminal (ls, cp, rm, mb).

Objects are named `s3://BUCKET/KEY`, as in the aws cli; anything else is a
local path (`-` for stdin or stdout).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import click
from rich import filesize
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from shoestring.app import App
from shoestring.cli.keys import run_with_storage
from shoestring.cli.project_app import project_option
from shoestring.errors import ShoestringError
from shoestring.storage.errors import NoSuchKey

CHUNK = 1024 * 1024
PROGRESS_FROM = 8 * CHUNK  # copies smaller than this finish before a bar would be useful


def split_url(url: str) -> tuple[str, str] | None:
    """(bucket, key) of `s3://bucket/key`, or None for a local path."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise click.BadParameter(f"{url!r} names no bucket: use s3://BUCKET/KEY")
    return bucket, key


def _progress(total: int) -> Progress | None:
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        return None
    return Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=Console(stderr=True),
    )  # fmt: skip


@click.group("storage")
def storage_group() -> None:
    """List, copy and delete objects in the app's buckets."""


@storage_group.command("ls")
@project_option
@click.argument("url", required=False, default="")
@click.option("--recursive", "-r", is_flag=True, help="List every key, not one level.")
def storage_ls(project_dir: Path, url: str, recursive: bool) -> None:
    """List buckets, or the objects of s3://BUCKET[/PREFIX]."""

    async def action(app: App) -> list[str]:
        if not url:
            return [b.name for b in await app.storage.list_buckets()]
        target = split_url(url if url.startswith("s3://") else f"s3://{url}")
        assert target is not None
        bucket, prefix = target
        lines = []
        async for item in app.storage.bucket(bucket).list(
            prefix=prefix, delimiter="" if recursive else "/"
        ):
            if isinstance(item, str):
                lines.append(f"{'PRE':>30} {item}")
            else:
                stamp = item.last_modified.strftime("%Y-%m-%d %H:%M:%S")
                lines.append(f"{stamp} {item.size:>10} {item.key}")
        return lines

    for line in run_with_storage(project_dir, action, open_backend=True):
        click.echo(line)


@storage_group.command("mb")
@project_option
@click.argument("bucket")
@click.option("--public", is_flag=True, help="Public-read: anyone may GET its objects unsigned.")
def storage_mb(project_dir: Path, bucket: str, public: bool) -> None:
    """Make the bucket BUCKET (or s3://BUCKET)."""
    name = bucket.removeprefix("s3://").rstrip("/")
    run_with_storage(
        project_dir, lambda app: app.storage.create_bucket(name, public=public), open_backend=True
    )
    click.echo(f"make_bucket: {name}", err=True)


@storage_group.command("rm")
@project_option
@click.argument("url")
@click.option("--recursive", "-r", is_flag=True, help="Delete every object under the prefix.")
def storage_rm(project_dir: Path, url: str, recursive: bool) -> None:
    """Delete the object s3://BUCKET/KEY (or every key under it with --recursive)."""
    target = split_url(url)
    if target is None or not (target[1] or recursive):
        raise click.BadParameter("give an object as s3://BUCKET/KEY", param_hint="URL")
    bucket_name, key = target

    async def action(app: App) -> int:
        bucket = app.storage.bucket(bucket_name)
        if not recursive:
            if not await bucket.delete(key):
                raise ShoestringError(f"no object {url}")
            return 1
        keys = [i.key async for i in bucket.list(prefix=key) if not isinstance(i, str)]
        for one in keys:
            await bucket.delete(one)
        return len(keys)

    count = run_with_storage(project_dir, action, open_backend=True)
    click.echo(f"deleted {count} object(s)", err=True)


@storage_group.command("cp")
@project_option
@click.argument("source")
@click.argument("destination")
@click.option("--content-type", help="Content type of an uploaded object (default: from the name).")
def storage_cp(project_dir: Path, source: str, destination: str, content_type: str | None) -> None:
    """Copy a local file to s3://BUCKET/KEY, an object to a local file, or an object to another.

    A destination ending in `/` keeps the source's file name. `-` is stdin or stdout.
    """
    src, dst = split_url(source), split_url(destination)
    if src is None and dst is None:
        raise click.BadParameter("one of SOURCE and DESTINATION must be s3://BUCKET/KEY")
    if src is None and source != "-":
        _check_readable(Path(source))
    if dst is not None and (not dst[1] or dst[1].endswith("/")):
        dst = (dst[0], dst[1] + Path(src[1] if src else source).name)
        destination = f"s3://{dst[0]}/{dst[1]}"
    if dst is None and destination != "-" and src is not None:
        if destination.endswith("/") or Path(destination).is_dir():
            destination = str(Path(destination) / Path(src[1]).name)
        if not Path(destination).parent.is_dir():
            raise click.BadParameter(
                f"no directory {Path(destination).parent}", param_hint="DESTINATION"
            )

    async def action(app: App) -> int:
        try:
            if src is not None and dst is not None:
                info = await app.storage.bucket(dst[0]).copy(src[1], dst[1], source_bucket=src[0])
                return info.size
            if dst is not None:
                return await _upload(app, source, dst[0], dst[1], content_type)
            assert src is not None
            return await _download(app, src[0], src[1], destination)
        except NoSuchKey:
            raise ShoestringError(f"no object {source}") from None

    size = run_with_storage(project_dir, action, open_backend=True)
    click.echo(f"copied {filesize.decimal(size)}: {source} -> {destination}", err=True)


def _check_readable(path: Path) -> None:
    if path.is_dir():
        raise click.BadParameter(
            f"{path} is a directory: copy its files one by one, or sync it with the aws cli "
            "against the S3 API (`aws s3 sync`)",
            param_hint="SOURCE",
        )
    if not path.is_file():
        raise click.BadParameter(f"no file {path}", param_hint="SOURCE")


async def _upload(app: App, path: str, bucket: str, key: str, content_type: str | None) -> int:
    # The CLI's event loop runs nothing else: blocking file calls stall no one.
    stream = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115, ASYNC230
    total = 0 if path == "-" else Path(path).stat().st_size  # noqa: ASYNC240
    progress = _progress(total)

    async def chunks() -> AsyncIterator[bytes]:
        task = progress.add_task(f"upload {Path(path).name}", total=total) if progress else None
        while chunk := stream.read(CHUNK):
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
            yield chunk

    try:
        if progress is not None:
            progress.start()
        info = await app.storage.bucket(bucket).put(key, chunks(), content_type=content_type)
    finally:
        if progress is not None:
            progress.stop()
        if stream is not sys.stdin.buffer:
            stream.close()
    return info.size


async def _download(app: App, bucket: str, key: str, path: str) -> int:
    """Write the object to `path` (`-`: stdout), whole or not at all: through a temporary file."""
    stored = await app.storage.bucket(bucket).get(key)
    if path == "-":
        out: IO[bytes] = sys.stdout.buffer
    else:
        target = Path(path)
        part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        out = part.open("xb")
    progress = _progress(stored.info.size)
    task = (
        progress.add_task(f"download {Path(key).name}", total=stored.info.size)
        if progress
        else None
    )
    done = False
    try:
        if progress is not None:
            progress.start()
        async for chunk in stored.body:
            out.write(chunk)
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
        done = True
    finally:
        if progress is not None:
            progress.stop()
        if out is not sys.stdout.buffer:
            out.close()
            if done:
                os.replace(part, path)
            else:
                part.unlink()
    return stored.info.size
