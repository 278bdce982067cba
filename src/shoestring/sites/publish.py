"""Publishing a built site: a new release directory, switched in atomically.

    data/sites/NAME/releases/20261124T073000.123-1a2b/   one per publish, kept for rollback
    data/sites/NAME/current -> releases/...              a symlink, replaced with rename(2)

A request resolves `current` once, so it is served wholly from one release;
the switch is a single rename, so there is no moment without a site. Text
files get Brotli and gzip siblings at publish time (compression.py), unless
the build brought its own; files are copied and compressed on all cores.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

from shoestring.errors import ShoestringError
from shoestring.sites.compression import compress, siblings_to_make

KEEP_RELEASES = 5
# A release id is one path segment or key segment: never `..`, never a slash.
_RELEASE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,99}$")


class PublishError(ShoestringError):
    """The site could not be published or rolled back; the live release is unchanged."""


def check_release(release: str) -> str:
    """`release` if it can be a release id (one path or key segment), else PublishError."""
    if not _RELEASE.match(release) or ".." in release:
        raise PublishError(
            f"{release!r} is not a release id: see `shoestring sites ls` for the kept ones"
        )
    return release


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

    def uploaded(self, path: str, size: int) -> None:
        """`path` (`size` bytes) is in the release, with the siblings made for it."""
        ...


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
    files = [path for path in source.rglob("*") if path.is_file()]
    present = {path.relative_to(source).as_posix() for path in files}
    if progress is not None:
        progress.planned(len(files), sum(path.stat().st_size for path in files))

    def place(src: str, dst: str) -> tuple[str, int]:
        shutil.copy2(src, dst)
        relative = Path(src).relative_to(source).as_posix()
        size = os.path.getsize(dst)
        suffixes = siblings_to_make(relative, size, present)
        data = Path(dst).read_bytes() if suffixes else b""
        for suffix in suffixes:
            encoded = compress(data, suffix)  # Brotli and zlib let go of the GIL meanwhile
            if encoded is not None:
                Path(dst + suffix).write_bytes(encoded)
        return relative, size

    # copytree makes each directory before handing out its files, so they can
    # be copied and compressed in worker threads while it walks on.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        placed: list[Future[tuple[str, int]]] = []
        shutil.copytree(
            source,
            staging,
            symlinks=False,
            copy_function=lambda src, dst: placed.append(pool.submit(place, src, dst)),
        )
        for done in as_completed(placed):
            relative, size = done.result()
            if progress is not None:
                progress.uploaded(relative, size)
    _sync_tree(staging)
    staging.rename(folder / release)
    switch(data_dir, name, release)
    for old in releases(data_dir, name)[:-KEEP_RELEASES]:
        shutil.rmtree(folder / old, ignore_errors=True)
    return release


def switch(data_dir: Path, name: str, release: str) -> None:
    """Make `release`, one of the site's releases, live with one rename(2)."""
    # Only a name `releases` lists: `../../..` is a directory too, and the
    # symlink would then make the data directory the site.
    if check_release(release) not in releases(data_dir, name):
        raise PublishError(
            f"site {name} has no release {release}; see `shoestring sites ls {name}`"
        )
    base = site_dir(data_dir, name)
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
