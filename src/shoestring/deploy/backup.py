"""One-file backups of a project's data directory, and their restore.

A backup is a gzip'd tar:

    data/<path>        every file of the data directory
    manifest.json      format, project, when, and each file's size and SHA-256

SQLite databases (the tables and queue in `shoestring.db`, the object index
in `storage/index.sqlite`) are copied with SQLite's online backup API, so a
running app keeps writing while the copy stays consistent; their -wal/-shm
files are not needed. Object bodies are immutable files named by random ids,
so they are copied after the index: a body the copy of the index points to
is never rewritten, only deleted (reported, and the backup refused, if that
happens mid-copy). Everything else (secrets, keys, published sites) is
copied as it is.

Restore verifies every checksum into a directory beside the data directory
before touching it, then swaps the two with renames: the data directory is
either the old one or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from shoestring import __version__
from shoestring.deploy.errors import BackupError, RestoreRefused

FORMAT = 1
MANIFEST = "manifest.json"
DATA_PREFIX = "data/"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Recreated from the database by SQLite, or half-received bodies: not data.
_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".partial")
_SKIPPED_DIRS = {("storage", "tmp")}
_CHUNK = 1024 * 1024

ProgressHook = Callable[[int], None]
"""Called with a number of bytes just processed."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the data directory, `/`-separated
    size: int
    sha256: str
    kind: Literal["sqlite", "file"]


@dataclass(frozen=True)
class Manifest:
    project: str
    created: float
    shoestring: str = __version__
    format: int = FORMAT
    entries: list[Entry] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.entries)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Manifest:
        try:
            data = json.loads(raw)
            entries = [Entry(**entry) for entry in data.pop("entries")]
            manifest = cls(**data, entries=entries)
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{source}: the manifest is damaged ({exc})") from None
        if manifest.format != FORMAT:
            raise BackupError(
                f"{source} is backup format {manifest.format}; this shoestring reads format "
                f"{FORMAT}: restore it with shoestring {manifest.shoestring}"
            )
        return manifest


def data_files(data_dir: Path) -> Iterator[Path]:
    """The files a backup of `data_dir` holds, in a stable order."""
    for directory, subdirs, files in os.walk(data_dir):
        relative = Path(directory).relative_to(data_dir)
        subdirs[:] = sorted(d for d in subdirs if (*relative.parts, d) not in _SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(directory, name)
            if name.endswith(_SKIPPED_SUFFIXES) or not path.is_file() or path.is_symlink():
                continue
            yield path


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def create_backup(
    data_dir: Path,
    target: Path,
    *,
    project: str,
    progress: ProgressHook | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Manifest:
    """Write a backup of `data_dir` to `target` (mode 0600: it holds the secrets).

    `on_total` is told the number of bytes to copy once it is known, and
    `progress` each chunk copied. The file appears under its name only once
    it is complete.
    """
    if not data_dir.is_dir():
        raise BackupError(f"there is no data directory at {data_dir}: nothing to back up")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    manifest = Manifest(project=project, created=time.time())
    with tempfile.TemporaryDirectory(prefix="shoestring-backup-", dir=target.parent) as staging:
        # Databases first (small, and the index must be copied before the bodies).
        paths = list(data_files(data_dir))
        snapshots: dict[Path, Path] = {}
        for number, path in enumerate(p for p in paths if is_sqlite(p)):
            snapshots[path] = _snapshot(path, Path(staging, f"{number}.sqlite"))
        sizes = {path: (snapshots.get(path) or path).stat().st_size for path in paths}
        if on_total:
            on_total(sum(sizes.values()))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for path in paths:
                    source = snapshots.get(path, path)
                    relative = path.relative_to(data_dir).as_posix()
                    entry = _add(tar, source, relative, sizes[path], progress)
                    kind: Literal["sqlite", "file"] = "sqlite" if path in snapshots else "file"
                    manifest.entries.append(Entry(relative, entry[0], entry[1], kind))
                body = manifest.to_json()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), int(manifest.created), 0o600
                tar.addfile(info, io.BytesIO(body))
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return manifest


def _snapshot(database: Path, copy: Path) -> Path:
    """A consistent copy of a live SQLite database (the online backup API)."""
    try:
        source = sqlite3.connect(database, timeout=30)
        try:
            destination = sqlite3.connect(copy)
            with contextlib.closing(destination):
                source.backup(destination)
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database {database}: {exc}") from None
    return copy


def _add(
    tar: tarfile.TarFile, source: Path, name: str, size: int, progress: ProgressHook | None
) -> tuple[int, str]:
    info = tarfile.TarInfo(DATA_PREFIX + name)
    info.size, info.mode = size, source.stat().st_mode & 0o700
    info.mtime = int(source.stat().st_mtime)
    try:
        with source.open("rb") as file:
            reader = _HashingReader(file, progress)
            tar.addfile(info, reader)
    except FileNotFoundError:
        raise BackupError(
            f"{name} was deleted while the backup was being made; run the backup again"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from None
    if reader.count != size:
        raise BackupError(f"{name} changed size while being copied; run the backup again")
    return size, reader.digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """Hashes and counts what tarfile reads, so each file is read once."""

    def __init__(self, file: IO[bytes], progress: ProgressHook | None) -> None:
        self.file, self.progress = file, progress
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.digest.update(chunk)
        self.count += len(chunk)
        if self.progress and chunk:
            self.progress(len(chunk))
        return chunk


def read_manifest(archive: Path) -> Manifest:
    """The manifest of a backup file, without unpacking the rest."""
    with _open(archive) as tar:
        try:
            member = tar.getmember(MANIFEST)
        except KeyError:
            raise BackupError(
                f"{archive} has no {MANIFEST}: it is not a complete shoestring backup"
            ) from None
        file = tar.extractfile(member)
        assert file is not None
        return Manifest.from_json(file.read(), str(archive))


@contextlib.contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            yield tar
    except FileNotFoundError:
        raise BackupError(f"no backup at {archive}") from None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise BackupError(f"{archive} is not a readable backup ({exc})") from None


def is_empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def restore_backup(
    archive: Path,
    data_dir: Path,
    *,
    force: bool = False,
    progress: ProgressHook | None = None,
) -> tuple[Manifest, Path | None]:
    """Replace `data_dir` with the backup's contents.

    Refuses (RestoreRefused) to replace a non-empty data directory unless
    `force`. Every file is unpacked beside `data_dir` and checked against the
    manifest before the data directory changes. Returns the manifest and,
    when a data directory was replaced, where the previous one was moved.
    """
    if not force and not is_empty(data_dir):
        raise RestoreRefused(
            f"{data_dir} already holds data; restoring would replace it. Run "
            "`shoestring backup` first if you may want it back, then restore with --force"
        )
    manifest = read_manifest(archive)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restore-{secrets.token_hex(4)}")
    try:
        _unpack(archive, staging, progress)
        _verify(staging, manifest, archive)
        for directory, _subdirs, _files in os.walk(staging):
            os.chmod(directory, 0o700)
        previous = _swap(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest, previous


def _unpack(archive: Path, staging: Path, progress: ProgressHook | None) -> None:
    staging.mkdir(mode=0o700)
    with _open(archive) as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            name = PurePosixPath(member.name)
            if (
                not member.isfile()
                or not member.name.startswith(DATA_PREFIX)
                or name.is_absolute()
                or ".." in name.parts
            ):
                raise BackupError(f"{archive} holds an unexpected entry {member.name!r}")
            # By hand rather than tar.extract(filter=...), which Python 3.11.2
            # (Debian 12's) lacks: regular files only, owner-only modes, and
            # O_EXCL, so nothing in the archive can replace what it made.
            target = staging.joinpath(*name.parts)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            fd = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, (member.mode & 0o700) or 0o600
            )
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            if progress:
                progress(member.size)


def _verify(staging: Path, manifest: Manifest, archive: Path) -> None:
    root = staging / DATA_PREFIX
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    expected = {entry.path for entry in manifest.entries}
    if found != expected:
        odd = sorted(found ^ expected)[:5]
        raise BackupError(
            f"{archive} does not match its manifest (files {odd}); it is damaged, "
            "use another backup"
        )
    for entry in manifest.entries:
        digest = hashlib.sha256()
        with (root / entry.path).open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != entry.sha256:
            raise BackupError(
                f"{archive}: {entry.path} fails its checksum; the file is damaged, "
                "use another backup"
            )


def _swap(staging: Path, data_dir: Path) -> Path | None:
    """Put the verified tree in place; return where the old one went (if any)."""
    fresh = staging / DATA_PREFIX
    if not fresh.exists():
        fresh.mkdir(mode=0o700)  # an empty backup restores an empty data directory
    if not data_dir.exists():
        os.rename(fresh, data_dir)
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    previous = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
    os.rename(data_dir, previous)
    try:
        os.rename(fresh, data_dir)
    except OSError:
        os.rename(previous, data_dir)
        raise
    if is_empty(previous):
        previous.rmdir()
        return None
    return previous
