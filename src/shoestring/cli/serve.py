"""`shoestring run` and `shoestring dev`."""

from __future__ import annotations

from pathlib import Path

import click

from shoestring.cli.project_app import project_dir_argument, require_project
from shoestring.logs import configure_logging
from shoestring.server import ROLES, Overrides, run_project

host_option = click.option("--host", help="Address to listen on [default: server.host, 127.0.0.1].")
port_option = click.option(
    "--port", type=click.IntRange(0, 65535), help="Port to listen on [default: server.port, 8000]."
)


@click.command("run")
@project_dir_argument
@host_option
@port_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes sharing the port [default: server.workers, 1].",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(sorted(ROLES)),
    help="Run only these roles (repeatable): web (HTTP), worker (jobs), scheduler, smtp (the receiving mail server, when mail.inbound.enabled). Default: all.",
)
def run_command(
    project_dir: Path,
    host: str | None,
    port: int | None,
    workers: int | None,
    roles: tuple[str, ...],
) -> None:
    """Serve the project in DIR (default: here) in production mode.

    Every role runs in one process unless --role picks some: HTTP, the job
    worker, the scheduler and the receiving SMTP server. Logs are JSON lines on stdout. SIGTERM or
    Ctrl-C finishes in-flight requests and jobs, stops the services and exits 0.
    """
    overrides = Overrides(
        host=host, port=port, workers=workers, roles=frozenset(roles) if roles else ROLES
    )
    raise SystemExit(run_project(require_project(project_dir).resolve(), overrides))


@click.command("dev")
@project_dir_argument
@host_option
@port_option
def dev_command(project_dir: Path, host: str | None, port: int | None) -> None:
    """Serve the project in DIR and restart it when a file changes.

    Logs are readable lines instead of JSON; everything else is as in `run`.
    """
    from shoestring.reload import run_dev

    configure_logging("info", "console")
    overrides = Overrides(host=host, port=port, workers=1, log_format="console")
    raise SystemExit(run_dev(require_project(project_dir).resolve(), overrides))
