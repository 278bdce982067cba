"""`shoestring sites`: publish a build, list releases, roll back."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table as RichTable

from shoestring.cli.project_app import project_option
from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.sites import caddy
from shoestring.sites import publish as releases


def _published_site(project_dir: Path, name: str) -> Path:
    settings = load_settings(project_dir)
    site = settings.sites.get(name)
    if site is None:
        known = ", ".join(settings.sites) or "none"
        raise ShoestringError(f"no [sites.{name}] in shoestring.toml (sites: {known})")
    if site.root:
        raise ShoestringError(
            f"site {name} serves the directory {site.root} as it is; remove `root` to publish releases"
        )
    return settings.data_dir


@click.group("sites")
def sites_group() -> None:
    """Static sites: publish builds atomically, list and roll back releases."""


@sites_group.command("publish")
@project_option
@click.argument("name")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def sites_publish(project_dir: Path, name: str, build_dir: Path) -> None:
    """Publish BUILD_DIR (with its index.html) as the live release of site NAME.

    The files are copied, text files get gzip siblings, and the site switches
    to the new release in one step; the previous release stays for rollback.
    """
    data_dir = _published_site(project_dir, name)
    release = releases.publish(data_dir, name, build_dir)
    click.echo(f"site {name}: release {release} is live")


@sites_group.command("rollback")
@project_option
@click.argument("name")
@click.argument("release", required=False)
def sites_rollback(project_dir: Path, name: str, release: str | None) -> None:
    """Make RELEASE (default: the one before the live one) live again."""
    data_dir = _published_site(project_dir, name)
    live = releases.rollback(data_dir, name, release)
    click.echo(f"site {name}: release {live} is live")


@sites_group.command("ls")
@project_option
@click.argument("name")
def sites_ls(project_dir: Path, name: str) -> None:
    """List the releases of site NAME, marking the live one."""
    data_dir = _published_site(project_dir, name)
    live = releases.current_root(data_dir, name).name
    table = RichTable("release", "live")
    for release in releases.releases(data_dir, name):
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
