"""`shoestring dev`: serve the project and restart it whenever its files change."""

from __future__ import annotations

import logging
from pathlib import Path

import watchfiles

from shoestring.config import load_settings
from shoestring.server import Overrides, run_project

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
    raise SystemExit(run_project(project_dir, overrides))


def run_dev(project_dir: Path, overrides: Overrides) -> int:
    """Serve `project_dir` in a child process, restarted on every change outside the data dir."""
    data_dir = load_settings(project_dir).data_dir
    watch_filter = ProjectFilter(data_dir)

    def report(changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        log.warning("reloading: %s changed", ", ".join(names[:5]))

    watchfiles.run_process(
        project_dir,
        target=_serve_once,
        args=(project_dir, overrides),
        watch_filter=watch_filter,
        callback=report,
    )
    return 0
