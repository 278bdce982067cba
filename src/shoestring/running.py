"""A mark that an app runs on a data directory, for commands that must not run beside it.

`shoestring run` (and `dev`) holds a shared lock on `<data_dir>/.running` for
as long as it runs; `shoestring restore`, which replaces the data directory,
refuses while any process holds it. The kernel drops the lock with the
process, however it ends (kill -9 included), so a crash leaves no stale mark.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

MARK = ".running"


def mark_running(data_dir: Path) -> IO[bytes]:
    """Hold the shared lock for as long as the returned file stays open."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    file = (data_dir / MARK).open("ab")
    fcntl.flock(file, fcntl.LOCK_SH)
    return file


def is_running(data_dir: Path) -> bool:
    """Whether a process holds the mark of `data_dir` now."""
    path = data_dir / MARK
    if not path.exists():
        return False
    with path.open("ab") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
    return False
