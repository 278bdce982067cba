"""Publishing a built site: a new release directory, switched in atomically.

    data/sites/NAME/releases/20261124T073000.123-1a2b/   one per publish, kept for rollback
    data/sites/NAME/current -> releases/...              a symlink, replaced with rename(2)

A request resolves `current` once, so it is served wholly from one release;
the switch is a single rename, so there is no moment without a site. Text
files get a gzip sibling at publish time, unless the build brought its own.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Protocol

from shoestring.errors import ShoestringError

KEEP_RELEASES = 5
COMPRESSIBLE = {".html", ".htm", ".css", ".js", ".mjs", ".json", ".svg", ".txt", ".xml",
                ".map", ".webmanifest", ".wasm", ".ico"}  # fmt: skip
MIN_COMPRESS = 1024  # smaller files gain nothing worth a second file


class PublishError(ShoestringError):
    """The site could not be published or rolled back; the live release is unchanged."""


def should_compress(name: str, size: int) -> bool:
    """Whether publishing makes a gzip sibling for this file (when the build brought none)."""
    return PurePosixPath(name).suffix in COMPRESSIBLE and size >= MIN_COMPRESS


def compress(data: bytes) -> bytes:
    # mtime=0: the same file gives the same bytes, whichever release made them.
    return gzip.compress(data, compresslevel=9, mtime=0)


def new_release_id() -> str:
    """`20261124T073000.123-1a2b`: sorts by publish time (to the millisecond), and unique."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}-{uuid.uuid4().hex[:4]}"


def site_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "sites" / name


def current_root(data_dir: Path, name: str) -> Path:
    """The live release's directory (a path that does not exist before the first publish)."""
    return (site_dir(data_dir, name) / "current").resolve()


def releases(data_dir: Path, name: str) -> list[str]:
    folder = site_dir(data_dir, name) / "releases"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))


class PublishProgress(Protocol):
    """What a publish reports as it goes (the CLI draws a progress bar from it)."""

    def planned(self, files: int, size: int) -> None: ...

    def uploaded(self, path: str, size: int) -> None: ...


def publish(
    data_dir: Path, name: str, source: Path, *, progress: PublishProgress | None = None
) -> str:
    """Copy `source` into a new release, compress it, switch to it; return its id."""
    if not (source / "index.html").is_file():
        raise PublishError(f"{source} has no index.html: point at the build output (dist/, build/)")
    release = new_release_id()
    folder = site_dir(data_dir, name) / "releases"
    staging = folder / f"{release}.tmp"
    folder.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        files = [path for path in source.rglob("*") if path.is_file()]
        progress.planned(len(files), sum(path.stat().st_size for path in files))

    def copy(src: str, dst: str) -> object:
        copied = shutil.copy2(src, dst)
        if progress is not None:
            progress.uploaded(src, os.path.getsize(dst))
        return copied

    shutil.copytree(source, staging, symlinks=False, copy_function=copy)
    for path in staging.rglob("*"):
        if path.is_file() and should_compress(path.name, path.stat().st_size):
            sibling = path.with_name(path.name + ".gz")
            if not sibling.exists():
                sibling.write_bytes(compress(path.read_bytes()))
    _sync_tree(staging)
    staging.rename(folder / release)
    switch(data_dir, name, release)
    for old in releases(data_dir, name)[:-KEEP_RELEASES]:
        shutil.rmtree(folder / old, ignore_errors=True)
    return release


def switch(data_dir: Path, name: str, release: str) -> None:
    """Make `release` live with one rename(2)."""
    base = site_dir(data_dir, name)
    if not (base / "releases" / release).is_dir():
        raise PublishError(f"site {name} has no release {release}; see `shoestring sites ls`")
    link = base / "current"
    temporary = base / f"current.{uuid.uuid4().hex[:6]}"
    temporary.symlink_to(Path("releases") / release)
    os.replace(temporary, link)
    _fsync_dir(base)


def rollback(data_dir: Path, name: str, release: str | None = None) -> str:
    """Switch to `release`, or to the one before the live one; return it."""
    known = releases(data_dir, name)
    live = current_root(data_dir, name).name
    if release is None:
        if live not in known or known.index(live) == 0:
            raise PublishError(f"site {name} has no release before {live or 'the live one'}")
        release = known[known.index(live) - 1]
    switch(data_dir, name, release)
    return release


def _sync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
