"""`shoestring dev`: serve the project and restart it whenever its files change."""

from __future__ import annotations

import logging
from pathlib import Path

import watchfiles

from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.server import Overrides, bind_socket, run_project

log = logging.getLogger("shoestring.dev")


# Files whose change needs a restart; assets (css, js, images) are read per
# request anyway, and logs or databases written into the project would loop.
RELOAD_SUFFIXES = (".py", ".toml", ".html", ".jinja", ".j2", ".json", ".env")


class ProjectFilter(watchfiles.DefaultFilter):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(ignore_paths=[data_dir])

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        return path.endswith(RELOAD_SUFFIXES) and super().__call__(change, path)


def _serve_once(project_dir: Path, overrides: Overrides) -> None:
    try:
        status = run_project(project_dir, overrides)
    except ShoestringError as exc:  # a broken app.py or setting: say what, wait for the fix
        from shoestring.cli import report

        status = report(exc)
        log.warning("not serving: fix the problem above and save; shoestring dev restarts then")
    raise SystemExit(status)


def run_dev(project_dir: Path, overrides: Overrides) -> int:
    """Serve `project_dir` in a child process, restarted on every change outside the data dir.

    A taken port is no problem a change to the project fixes: it stops here, before
    watching (PortInUseError).
    """
    settings = overrides.apply(load_settings(project_dir))
    bind_socket(settings.server.host, settings.server.port).close()
    watch_filter = ProjectFilter(settings.data_dir)

    def announce(changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        log.warning("reloading: %s changed", ", ".join(names[:5]))

    watchfiles.run_process(
        project_dir,
        target=_serve_once,
        args=(project_dir, overrides),
        watch_filter=watch_filter,
        callback=announce,
    )
    return 0
