"""`shoestring sites`: publish a build, list releases, roll back.

A site with `bucket` keeps its releases in object storage (bucket_releases.py);
one without `root` or `bucket` keeps them under the data directory (publish.py).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.cli.keys import run_with_storage
from shoestring.cli.project_app import project_option
from shoestring.config import SiteSettings, load_settings
from shoestring.errors import ShoestringError
from shoestring.sites import caddy
from shoestring.sites import publish as releases
from shoestring.sites.bucket_releases import BucketLayout, BucketReleases

T = TypeVar("T")


def _site(project_dir: Path, name: str) -> SiteSettings:
    settings = load_settings(project_dir)
    site = settings.sites.get(name)
    if site is None:
        known = ", ".join(settings.sites) or "none"
        raise ShoestringError(f"no [sites.{name}] in shoestring.toml (sites: {known})")
    if site.root:
        raise ShoestringError(
            f"site {name} serves the directory {site.root} as it is; "
            "remove `root` to publish releases (or set `bucket` to keep them in object storage)"
        )
    return site


def _with_bucket_releases(
    project_dir: Path,
    name: str,
    site: SiteSettings,
    action: Callable[[BucketReleases], Awaitable[T]],
) -> T:
    def run(app: App) -> Awaitable[T]:
        layout = BucketLayout.for_site(name, site.prefix)
        return action(BucketReleases(app.storage.bucket(site.bucket), layout, site=name))

    return run_with_storage(project_dir, run, open_backend=True)


class _ProgressBar:
    """A rich progress bar on stderr (on a terminal), fed by a publish."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TextColumn("{task.fields[files]} files"),
            console=Console(stderr=True), disable=not sys.stderr.isatty(),
        )  # fmt: skip
        self.task: TaskID | None = None
        self.files = 0
        self.total = 0

    def planned(self, files: int, size: int) -> None:
        self.task = self.bar.add_task(self.label, total=size, files=f"0/{files}")
        self.total = files
        self.bar.start()

    def uploaded(self, path: str, size: int) -> None:
        if self.task is not None:
            self.files += 1
            self.bar.update(self.task, advance=size, files=f"{self.files}/{self.total}")

    def stop(self) -> None:
        self.bar.stop()


@click.group("sites")
def sites_group() -> None:
    """Static sites: publish builds atomically, list and roll back releases."""


on_host_option = click.option(
    "--deploy",
    "on_host",
    is_flag=True,
    help="Act on the deploy host's site (over SSH, as `shoestring deploy` connects) "
    "instead of this machine's.",
)


def _on_host(project_dir: Path, *args: str, build_dir: Path | None = None) -> None:
    """Run `shoestring sites ARGS` on the deploy host and print what it printed."""
    from shoestring.cli.deploy import run_deployment

    output = run_deployment(project_dir, lambda d: d.sites(*args, build_dir=build_dir))
    click.echo(output.rstrip())


@sites_group.command("publish")
@project_option
@on_host_option
@click.argument("name")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def sites_publish(project_dir: Path, name: str, build_dir: Path, on_host: bool) -> None:
    """Publish BUILD_DIR (with its index.html) as the live release of site NAME.

    The files are copied (or uploaded, for a site with `bucket`), text files
    get Brotli and gzip siblings, and the site switches to the new release in
    one step; the previous release stays for rollback. With --deploy, the
    directory is sent to the deploy host and published there.
    """
    site = _site(project_dir, name)
    if on_host:
        _on_host(project_dir, "publish", name, build_dir=build_dir)
        return
    progress = _ProgressBar(f"publish {name}")
    try:
        if site.bucket:
            release = _with_bucket_releases(
                project_dir, name, site, lambda bucket: bucket.publish(build_dir, progress=progress)
            )
        else:
            data_dir = load_settings(project_dir).data_dir
            release = releases.publish(data_dir, name, build_dir, progress=progress)
    finally:
        progress.stop()
    click.echo(f"site {name}: release {release} is live")


@sites_group.command("rollback")
@project_option
@on_host_option
@click.argument("name")
@click.argument("release", required=False)
def sites_rollback(project_dir: Path, name: str, release: str | None, on_host: bool) -> None:
    """Make RELEASE (default: the one before the live one) live again."""
    site = _site(project_dir, name)
    if on_host:
        _on_host(project_dir, "rollback", name, *([release] if release else []))
        return
    if site.bucket:
        live = _with_bucket_releases(
            project_dir, name, site, lambda bucket: bucket.rollback(release)
        )
    else:
        live = releases.rollback(load_settings(project_dir).data_dir, name, release)
    click.echo(f"site {name}: release {live} is live")


@sites_group.command("ls")
@project_option
@on_host_option
@click.argument("name")
def sites_ls(project_dir: Path, name: str, on_host: bool) -> None:
    """List the releases of site NAME, marking the live one."""
    site = _site(project_dir, name)
    if on_host:
        _on_host(project_dir, "ls", name)
        return
    if site.bucket:

        async def listing(bucket: BucketReleases) -> tuple[list[str], str | None]:
            return await bucket.releases(), await bucket.live()

        known, live = _with_bucket_releases(project_dir, name, site, listing)
    else:
        data_dir = load_settings(project_dir).data_dir
        known, live = releases.releases(data_dir, name), releases.current_root(data_dir, name).name
    table = RichTable("release", "live")
    for release in known:
        table.add_row(release, "yes" if release == live else "")
    Console().print(table)


@sites_group.command("caddyfile")
@project_option
@click.option(
    "--address", default=None, help="Caddy site address, e.g. example.com [default: :80]."
)
@click.option(
    "--upstream", default=None, help="Where the app listens [default: server.host:server.port]."
)
def sites_caddyfile(project_dir: Path, address: str | None, upstream: str | None) -> None:
    """Print the Caddyfile block that serves the sites from disk and proxies the rest to the app."""
    settings = load_settings(project_dir)
    click.echo(
        caddy.render(
            settings,
            address=address or ":80",
            upstream=upstream or f"{settings.server.host}:{settings.server.port}",
        ),
        nl=False,
    )
