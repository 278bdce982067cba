"""`shoestring deploy` and the commands around it: releases, rollback, logs,
status, ssh, destroy, backup, restore and migrate.

Deploy commands act on the host named in `[deploy]` of shoestring.toml;
`backup` and `restore` act on this machine's data directory unless --remote
says the host's. A backup is a local file or an object in S3
(`s3://BUCKET/KEY`, see shoestring.deploy.s3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from shoestring.app import App
from shoestring.cli.project_app import any_directory_option, project_option, run_with_app
from shoestring.config import Settings, load_settings
from shoestring.deploy import backup as backups
from shoestring.deploy.errors import BackupError, DeployError, NothingToBackUp
from shoestring.deploy.layout import Layout, Target
from shoestring.errors import ShoestringError

if TYPE_CHECKING:  # asyncssh (0.2 s) and boto3 (0.3 s) are slow to import: only users pay
    from shoestring.deploy import remote, s3

T = TypeVar("T")
console = Console(stderr=True, highlight=False)


def _project_name(settings: Settings, project_dir: Path) -> str:
    return settings.project.name or project_dir.resolve().name


@contextmanager
def _bytes_progress(
    description: str,
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(on_total, advance) hooks drawing a rich progress bar on stderr."""
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=console, transient=not console.is_terminal,
        disable=not console.is_terminal,
    )  # fmt: skip
    task = progress.add_task(description, total=None)
    with progress:
        yield (
            lambda total: progress.update(task, total=total),
            lambda done: progress.advance(task, done),
        )


def local_backup_dir() -> Path:
    # Outside the project, so a backup (it holds the secrets) never lands in git.
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share"
    return Path(base) / "shoestring" / "backups"


def default_backup_name(project: str) -> str:
    return f"{project}-{time.strftime('%Y%m%d-%H%M%S')}.backup.tar.gz"


def _in_s3(where: str) -> bool:
    return where.startswith("s3://")  # without importing boto3: local backups never pay for it


def _s3_bucket(url: str, *, default_name: str | None = None) -> s3.BackupBucket:
    from shoestring.deploy import s3

    return s3.BackupBucket(s3.S3Location.parse(url, default_name=default_name))


@contextmanager
def _transfer_dir() -> Iterator[Path]:
    """A private directory for a backup on its way to or from S3, deleted after."""
    base = local_backup_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".s3-", dir=base) as directory:
        yield Path(directory)


@contextmanager
def _backup_file(source: str) -> Iterator[Path]:
    """The backup at `source` (a path or s3://BUCKET/KEY) as a local file."""
    if not _in_s3(source):
        if not Path(source).is_file():
            raise BackupError(f"there is no backup file at {source}")
        yield Path(source)
        return
    bucket = _s3_bucket(source)
    size = bucket.size()  # before anything is written here: errors come first
    with _transfer_dir() as directory:
        local = directory / "backup.tar.gz"
        with _bytes_progress(f"downloading {bucket.location}") as (on_total, advance):
            on_total(size)
            bucket.download(local, progress=advance)
        yield local


@click.command("backup")
@project_option
@click.option(
    "--to",
    "target",
    metavar="FILE|s3://BUCKET/KEY",
    help="Where the backup goes: a file, or an S3 object (a key ending in / gets the default "
    "name) [default: ~/.local/share/shoestring/backups/PROJECT-DATE.backup.tar.gz].",
)
@click.option(
    "--remote",
    "on_host",
    is_flag=True,
    help="Back up the deploy host's data and Caddy's certificates instead.",
)
def backup_command(project_dir: Path, target: str | None, on_host: bool) -> None:
    """Write the project's data to one file: databases, objects, secrets.

    SQLite databases are copied with SQLite's online backup API, so the app
    may keep running. The file holds the secrets: it is written readable by
    you only; keep it somewhere safe. `shoestring restore FILE` brings it back.
    With --remote the file also holds the host's Caddy certificate storage,
    which `shoestring deploy --restore FILE` puts back on a new host.

    --to s3://BUCKET/KEY uploads it with the standard AWS credentials
    (AWS_ACCESS_KEY_ID..., or AWS_PROFILE); AWS_ENDPOINT_URL_S3 names
    another S3 service.
    """
    settings = load_settings(project_dir)
    project = _project_name(settings, project_dir)
    name = default_backup_name(project)
    if target is None or not _in_s3(target):
        path = Path(target) if target else local_backup_dir() / name
        if path.is_dir():
            raise BackupError(
                f"{path} is a directory: give the backup's file name, e.g. {path / name}"
            )
        _write_backup(settings, project_dir, project, on_host, path)
        click.echo(str(path))
        return
    bucket = _s3_bucket(target, default_name=name)
    bucket.check_writable()  # before the backup is made: a wrong bucket fails in a second
    with _transfer_dir() as directory:
        local = _write_backup(settings, project_dir, project, on_host, directory / name)
        with _bytes_progress(f"uploading to {bucket.location}") as (on_total, advance):
            on_total(local.stat().st_size)
            bucket.upload(local, progress=advance)
    console.print(f"uploaded to [bold]{bucket.location}[/]")
    click.echo(str(bucket.location))


def _write_backup(
    settings: Settings, project_dir: Path, project: str, on_host: bool, target: Path
) -> Path:
    if on_host:
        from shoestring.deploy import remote

        _run(remote.remote_backup(settings, project_dir, project, target, RichReporter()))
        console.print(f"the host's data is backed up to [bold]{target}[/]")
        return target
    if settings.database.url and not settings.database.url.startswith("sqlite:"):
        console.print(
            "[yellow]The database is PostgreSQL: back it up with pg_dump; this file holds "
            "the data directory only.[/]"
        )
    with _bytes_progress("backing up") as (on_total, advance):
        manifest = backups.create_backup(
            settings.data_dir, target, project=project, progress=advance, on_total=on_total
        )
    console.print(
        f"backed up {len(manifest.entries)} files ({_size(manifest.size)}) to [bold]{target}[/]"
    )
    return target


@click.command("restore")
@any_directory_option
@click.argument("backup", metavar="BACKUP")
@click.option(
    "--force",
    is_flag=True,
    help="Replace a data directory that holds data, or restore another project's backup.",
)
@click.option(
    "--caddy-storage",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also replace Caddy's certificate storage, this directory, with the backup's "
    "(what `shoestring deploy --restore` does on the host; stop Caddy first).",
)
def restore_command(
    project_dir: Path, backup: str, force: bool, caddy_storage: Path | None
) -> None:
    """Replace the project's data directory with the contents of BACKUP.

    BACKUP is a file or s3://BUCKET/KEY. Every file is checked against the
    backup's manifest before anything changes; the swap is a rename, so the
    data directory is never half restored. Stop the app first: the restore
    refuses while `shoestring run` or `dev` runs on the project. A data
    directory that holds data is only replaced with --force, and is then
    kept beside it (the command says where); so is a backup of another
    project restored.
    """
    settings = load_settings(project_dir)
    project = _project_name(settings, project_dir)
    with _backup_file(backup) as archive:
        manifest = backups.read_manifest(archive)
        with _bytes_progress("restoring") as (on_total, advance):
            on_total(manifest.size)
            manifest, previous = backups.restore_backup(
                archive,
                settings.data_dir,
                force=force,
                progress=advance,
                caddy_storage=caddy_storage,
                project=project,
            )
    console.print(
        f"restored {len(manifest.entries)} files ({_size(manifest.size)}) of "
        f"{manifest.project} into [bold]{settings.data_dir}[/]"
    )
    if manifest.caddy and caddy_storage is not None:
        console.print(
            f"and Caddy's certificate storage ({len(manifest.caddy)} files) into {caddy_storage}"
        )
    elif manifest.caddy:
        console.print(
            f"The backup also holds a host's Caddy certificate storage ({len(manifest.caddy)} "
            "files): `shoestring deploy --restore` puts it back on a new host."
        )
    if previous is not None:
        console.print(f"the data it replaced is in {previous}; delete it when you are sure")


@click.command("migrate")
@project_option
def migrate_command(project_dir: Path) -> None:
    """Apply pending database migrations (shoestring's and the tables') and exit.

    `shoestring deploy` runs it before a new release starts; the app also
    migrates when it starts.
    """

    async def nothing(app: App) -> None:
        return None

    run_with_app(project_dir, nothing)
    click.echo("database is up to date")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    try:
        return asyncio.run(main())
    except DeployError:
        raise
    except OSError as exc:
        raise ShoestringError(f"{exc}") from None


class RichReporter:
    """Prints each step of a deploy as it starts (a spinner) and ends (its time)."""

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with console.status(title):
                yield
        except BaseException:
            console.print(Text.assemble(("✗ ", "bold red"), title))
            raise
        console.print(
            Text.assemble(("✓ ", "green"), title, (f" ({time.monotonic() - started:.1f}s)", "dim"))
        )

    def note(self, text: str) -> None:
        console.print(Text("  " + text, style="dim"))


def run_deployment(
    project_dir: Path,
    action: Callable[[remote.Deployment], Awaitable[T]],
) -> T:
    from shoestring.deploy import remote

    settings = load_settings(project_dir)
    project = _project_name(settings, project_dir)

    async def main() -> T:
        async with remote.deployment(settings, project_dir, project, RichReporter()) as deployment:
            return await action(deployment)

    return _run(main())


@click.command("deploy")
@project_option
@click.option(
    "--restore",
    "restore_from",
    metavar="FILE|s3://BUCKET/KEY",
    help="Provision a new host and restore this backup (data, secrets, Caddy's "
    "certificates) onto it before the release starts.",
)
@click.option("--force", is_flag=True, help="With --restore: restore another project's backup.")
def deploy_command(project_dir: Path, restore_from: str | None, force: bool) -> None:
    """Deploy the project to the host in [deploy] of shoestring.toml.

    The first run provisions the host (Debian packages incl. Caddy, the app's
    user, a firewall, automatic security updates, a hardened systemd unit).
    Every run then packages the project (git's view of it, plus pinned
    requirements), installs it as a new release, backs up the data, migrates,
    starts the release beside the live one, and moves traffic to it only
    once /_ready answers. If it never does, the live release keeps serving.
    Safe to run again after any failure.
    """
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        archive = stack.enter_context(_backup_file(restore_from)) if restore_from else None
        release = run_deployment(project_dir, lambda d: d.deploy(restore=archive, force=force))
    console.print(
        Text.assemble(
            ("deployed ", "bold green"), release, f" in {time.monotonic() - started:.0f}s"
        )
    )


@click.command("rollback")
@project_option
@click.argument("release", required=False)
def rollback_command(project_dir: Path, release: str | None) -> None:
    """Serve RELEASE again (default: the one before the live one).

    It starts beside the live release and takes traffic once ready, like a
    deploy; the data stays as it is (restore a backup for older data).
    """
    chosen = run_deployment(project_dir, lambda d: d.rollback(release))
    console.print(Text.assemble(("rolled back to ", "bold green"), chosen))


@click.command("releases")
@project_option
def releases_command(project_dir: Path) -> None:
    """List the releases on the host, the live one marked."""

    async def action(d: remote.Deployment) -> tuple[list[str], remote.State]:
        listed = await d.host.run(f"ls -1 {d.layout.releases}")
        return sorted(listed.stdout.split()), await d.state()

    releases, state = run_deployment(project_dir, action)
    table = Table("release", "", box=None)
    for name in releases:
        table.add_row(name, "live" if name == state.live else "")
    Console().print(table)


@click.command("logs")
@project_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("-n", "--lines", default=100, show_default=True, help="How many recent lines.")
@click.option("-g", "--grep", "pattern", help="Only lines matching this regular expression.")
def logs_command(project_dir: Path, follow: bool, lines: int, pattern: str | None) -> None:
    """The app's log on the host (journald), from every release's process."""

    async def action(d: remote.Deployment) -> int:
        units = shlex.quote(f"shoestring-{d.layout.project}@*")
        command = f"journalctl -u {units} -o cat --no-pager -n {int(lines)}"
        if pattern:
            command += f" -g {shlex.quote(pattern)}"
        return await d.host.stream(command + (" -f" if follow else ""), click.echo)

    with contextlib.suppress(KeyboardInterrupt):
        run_deployment(project_dir, action)


@click.command("status")
@project_option
def status_command(project_dir: Path) -> None:
    """The live release, its uptime and health, disk, certificates, pending updates."""
    rows = run_deployment(project_dir, _status)
    table = Table(box=None, show_header=False)
    for key, value in rows:
        table.add_row(Text(key, style="bold"), Text(value))
    Console().print(table)


async def _status(d: remote.Deployment) -> list[tuple[str, str]]:
    state = await d.state()
    rows = [("host", str(d.host.target)), ("release", state.live or "(none deployed)")]
    if state.live_port is not None:
        unit = d.layout.unit(state.live_port)
        since = await d.host.run(
            f"systemctl show -p ActiveState,ActiveEnterTimestamp --value {unit}", check=False
        )
        rows.append(("process", " since ".join(since.stdout.split("\n", 1)).strip()))
        ready = await d.host.run(
            f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{state.live_port}/_ready",
            check=False,
        )
        rows.append(("health", "ready" if ready.stdout == "200" else f"NOT ready ({ready.stdout})"))
    disk = await d.host.run(
        f"df -h --output=used,avail,pcent {d.layout.data_dir} | tail -1", check=False
    )
    rows.append(("disk", "used, free, %: " + " ".join(disk.stdout.split())))
    for domain in d.settings.deploy.domains:
        expiry = await d.host.run(
            "f=$(find /var/lib/caddy -name "
            f"{shlex.quote(domain + '.crt')} | head -1); "
            '[ -n "$f" ] && openssl x509 -noout -enddate -in "$f" | cut -d= -f2',
            check=False,
        )
        rows.append((f"certificate {domain}", expiry.stdout.strip() or "none yet"))
    updates = await d.host.run(
        "apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep -c '^Inst.*-security' || true",
        check=False,
    )
    rows.append(("security updates pending", updates.stdout.strip() or "?"))
    return rows


@click.command("ssh")
@project_option
def ssh_command(project_dir: Path) -> None:
    """Open a shell on the host (OpenSSH, with the key and host of [deploy])."""
    deploy = load_settings(project_dir).deploy
    target = Target.parse(deploy.host)
    command = ["ssh", "-p", str(target.port)]
    if deploy.ssh_key:
        command += ["-i", str(Path(deploy.ssh_key).expanduser())]
    command += ["-o", f"UserKnownHostsFile={Path(deploy.known_hosts).expanduser()}"]
    command.append(f"{target.user}@{target.address}")
    os.execvp("ssh", command)  # noqa: S606 - an interactive shell is OpenSSH's job


@click.command("destroy")
@project_option
@click.option("--no-backup", is_flag=True, help="Do not offer a final backup.")
def destroy_command(project_dir: Path, no_backup: bool) -> None:
    """Remove the project from the host: processes, releases, data, user.

    Asks for the project's name to confirm, and offers to download a final
    backup first (`shoestring deploy --restore FILE` brings it all back on a
    new host). Debian packages, Caddy and the firewall stay.
    """
    settings = load_settings(project_dir)
    project = _project_name(settings, project_dir)
    Target.parse(settings.deploy.host)  # no host: nothing to ask about
    console.print(
        f"This deletes [bold]{project}[/] from {settings.deploy.host}: every release, "
        "the data (tables, objects, secrets) and its user."
    )
    typed = click.prompt(
        "Type the project name to confirm", default="", show_default=False, err=True
    )
    if typed != project:
        raise ShoestringError(f"{typed!r} is not {project!r}: nothing was destroyed")
    if not no_backup and click.confirm("Download a final backup first?", default=True, err=True):
        from shoestring.deploy import remote

        target = local_backup_dir() / default_backup_name(project)
        try:
            _run(remote.remote_backup(settings, project_dir, project, target, RichReporter()))
        except NothingToBackUp as exc:
            raise DeployError(
                f"{exc}. Nothing was destroyed: run `shoestring destroy --no-backup` to "
                "destroy without a final backup"
            ) from None
        console.print(f"final backup: [bold]{target}[/]")
        click.echo(str(target))
    run_deployment(project_dir, _destroy)
    console.print(Text.assemble(("destroyed ", "bold red"), project))


async def _destroy(d: remote.Deployment) -> None:
    from shoestring.deploy import render
    from shoestring.deploy.remote import CADDYFILE

    layout: Layout = d.layout
    q = shlex.quote
    # Only what provisioning made: a user or a /var/lib directory that was
    # there before (a project named like a system service) is left alone.
    provisioned = await d.host.run(
        f"test -e {q(str(layout.root / '.provisioned'))} -o -e {q(str(layout.created))}",
        check=False,
    )
    if provisioned.status != 0:
        raise DeployError(
            f"{layout.root} on the host was not made by `shoestring deploy` (it has no "
            f".provisioned or .created file): nothing was removed. Check `base_dir` in "
            "[deploy] and the project's name"
        )
    created = (await d.host.read_file(layout.created) or b"").decode().split()
    units = "/etc/systemd/system"
    with d.report.step("stopping and removing the units"):
        await d.host.run(
            f"systemctl disable --now {q(f'shoestring-{layout.project}@*')} 2>/dev/null; "
            f"for p in {' '.join(map(str, d.settings.deploy.ports))}; do "
            f"systemctl disable --now shoestring-{layout.project}@$p 2>/dev/null; done; "
            f"systemctl disable --now {layout.mail_tls}.timer 2>/dev/null; "
            f"rm -f {units}/{layout.unit_template} "
            f"{units}/{layout.mail_tls}.service {units}/{layout.mail_tls}.timer "
            "&& systemctl daemon-reload"
        )
    with d.report.step("emptying Caddy's config"):
        await d.host.write_file(CADDYFILE, render.idle_caddyfile(d.settings).encode())
        await d.host.run("systemctl reload-or-restart caddy", check=False)
    paths = [layout.root, layout.pip_cache.parent, layout.caddy_root_ca, layout.etc]
    data = q(str(layout.data_dir))
    removed = " ".join(q(str(path)) for path in paths)
    if "data" in created:
        removed += f" {data} {data}.before-restore-*"
    else:
        d.report.note(f"{layout.data_dir} was there before shoestring: left in place")
    command = f"rm -rf {removed}"
    if "user" in created:
        command += f" && (userdel {q(layout.user)} 2>/dev/null; true)"
    else:
        d.report.note(f"the user {layout.user} was there before shoestring: left in place")
    with d.report.step("deleting releases, data and the user"):
        await d.host.run(command)
