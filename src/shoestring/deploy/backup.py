"""One-file backups of a project's data directory, and their restore.

A backup is a gzip'd tar:

    data/<path>        every file of the data directory
    caddy/<path>       Caddy's certificate storage, in backups of a deployed host
    manifest.json      format, project, when, and each file's size and SHA-256

SQLite databases (the tables and queue in `shoestring.db`, the object index
in `storage/index.sqlite`) are copied with SQLite's online backup API, so a
running app keeps writing while the copy stays consistent; their -wal/-shm
files are not needed. Object bodies are immutable files named by random ids,
so they are copied after the index: a body the copy of the index points to
is never rewritten, only deleted (reported, and the backup refused, if that
happens mid-copy). Everything else (secrets, keys, published sites) is
copied as it is.

Caddy's storage (certificates, their keys, the ACME account) is read on the
host by root, as a tar stream, and added to the host's backup by
`add_caddy_storage`, so the app's user never reads Caddy's keys. With it
back in place, a new host serves the same certificates instead of asking the
CA again (Let's Encrypt limits how often it issues the same names).

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from shoestring import __version__
from shoestring.deploy.errors import BackupError, RestoreRefused
from shoestring.running import is_running

FORMAT = 2
"""Format 2 added caddy/. A backup without Caddy's storage is written as
format 1, which every shoestring reads; this one reads both."""
FORMATS = (1, 2)
MANIFEST = "manifest.json"
DATA_PREFIX = "data/"
CADDY_PREFIX = "caddy/"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Recreated from the database by SQLite, or half-received bodies: not data.
_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".partial")
_SKIPPED_DIRS = {("storage", "tmp")}
# Caddy holds these only while it obtains a certificate; a stale one would make it wait.
_SKIPPED_CADDY_DIRS = {"locks"}
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
    entries: list[Entry] = field(default_factory=list)
    caddy: list[Entry] = field(default_factory=list)  # paths relative to Caddy's storage

    @property
    def format(self) -> int:
        return FORMAT if self.caddy else 1

    @property
    def size(self) -> int:
        return sum(entry.size for entry in [*self.entries, *self.caddy])

    def to_json(self) -> bytes:
        data = asdict(self)
        if not self.caddy:
            del data["caddy"]  # exactly format 1
        return json.dumps({"format": self.format, **data}, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Manifest:
        try:
            data = json.loads(raw)
            version = data.pop("format")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BackupError(f"{source}: the manifest is damaged ({exc})") from None
        if version not in FORMATS:
            raise BackupError(
                f"{source} is backup format {version}; this shoestring reads formats "
                f"{', '.join(map(str, FORMATS))}: restore it with shoestring {data.get('shoestring')}"
            )
        try:
            entries = [Entry(**entry) for entry in data.pop("entries")]
            caddy = [Entry(**entry) for entry in data.pop("caddy", [])]
            return cls(**data, entries=entries, caddy=caddy)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BackupError(f"{source}: the manifest is damaged ({exc})") from None


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
        with _writing(target) as tar:
            for path in paths:
                relative = path.relative_to(data_dir).as_posix()
                source = snapshots.get(path, path)
                digest = _add_file(tar, source, relative, sizes[path], progress)
                kind: Literal["sqlite", "file"] = "sqlite" if path in snapshots else "file"
                manifest.entries.append(Entry(relative, sizes[path], digest, kind))
            _add_manifest(tar, manifest)
    return manifest


def add_caddy_storage(archive: Path, storage: IO[bytes], target: Path) -> Manifest:
    """Write to `target` the backup `archive` with Caddy's certificate storage added.

    `storage` is a tar stream of Caddy's storage directory, as
    `tar -C DIR -cf - .` writes it: its regular files go under caddy/, with
    their modes, and into the manifest with their checksums. `target` is
    written like a backup: mode 0600, under its name only once complete.
    """
    manifest: Manifest | None = None
    with _open(archive) as source, _writing(target) as tar:
        for member in source:
            file = source.extractfile(member) if member.isfile() else None
            if member.name == MANIFEST and file is not None:
                manifest = Manifest.from_json(file.read(), str(archive))
            elif file is not None and member.name.startswith(DATA_PREFIX):
                tar.addfile(member, file)
            else:
                raise BackupError(f"{archive} holds an unexpected entry {member.name!r}")
        if manifest is None:
            raise BackupError(
                f"{archive} has no {MANIFEST}: it is not a complete shoestring backup"
            )
        caddy = _add_caddy_files(tar, storage)
        manifest = replace(manifest, caddy=caddy)
        _add_manifest(tar, manifest)
    return manifest


def _add_caddy_files(tar: tarfile.TarFile, storage: IO[bytes]) -> list[Entry]:
    entries = []
    try:
        with tarfile.open(fileobj=storage, mode="r|") as host:
            for member in host:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise BackupError(f"Caddy's storage holds an unexpected entry {member.name!r}")
                if not member.isfile() or path.parts[0] in _SKIPPED_CADDY_DIRS:
                    continue
                info = tarfile.TarInfo(CADDY_PREFIX + path.as_posix())
                info.size, info.mode, info.mtime = member.size, member.mode & 0o777, member.mtime
                file = host.extractfile(member)
                assert file is not None
                reader = _HashingReader(file, None)
                tar.addfile(info, reader)
                entries.append(
                    Entry(path.as_posix(), member.size, reader.digest.hexdigest(), "file")
                )
    except tarfile.TarError as exc:
        raise BackupError(f"Caddy's storage could not be read as a tar stream ({exc})") from None
    return entries


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[tarfile.TarFile]:
    """A new gzip'd tar at `target`, mode 0600; it appears under its name once complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                yield tar
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _add_manifest(tar: tarfile.TarFile, manifest: Manifest) -> None:
    body = manifest.to_json()
    info = tarfile.TarInfo(MANIFEST)
    info.size, info.mtime, info.mode = len(body), int(manifest.created), 0o600
    tar.addfile(info, io.BytesIO(body))


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


def _add_file(
    tar: tarfile.TarFile, source: Path, name: str, size: int, progress: ProgressHook | None
) -> str:
    """Add the data directory's file `name` (read from `source`); return its SHA-256."""
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
    return reader.digest.hexdigest()


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
    caddy_storage: Path | None = None,
    project: str | None = None,
) -> tuple[Manifest, Path | None]:
    """Replace `data_dir` with the backup's contents.

    Refuses (RestoreRefused) to replace a non-empty data directory, or to
    restore a backup of another project than `project` (when given), unless
    `force`. Every file is unpacked beside `data_dir` and checked against the
    manifest before the data directory changes. Returns the manifest and,
    when a data directory was replaced, where the previous one was moved.

    With `caddy_storage`, a backup holding Caddy's storage replaces that
    directory too (stop Caddy first); a backup without leaves it as it is.
    """
    if is_running(data_dir):
        raise RestoreRefused(
            f"the app is running on {data_dir} (`shoestring run` or `dev`): stop it first. "
            "A restore replaces the files it has open; what it wrote after would be lost"
        )
    if not force and not is_empty(data_dir):
        raise RestoreRefused(
            f"{data_dir} already holds data; restoring would replace it. Run "
            "`shoestring backup` first if you may want it back, then restore with --force"
        )
    manifest = read_manifest(archive)
    if project is not None and manifest.project != project and not force:
        raise RestoreRefused(
            f"{archive} is a backup of {manifest.project!r}, not of {project!r}: restore it "
            "into that project, or with --force if this is meant"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restore-{secrets.token_hex(4)}")
    try:
        _unpack(archive, staging, progress)
        _verify(staging / DATA_PREFIX, manifest.entries, archive)
        _verify(staging / CADDY_PREFIX, manifest.caddy, archive)
        for directory, _subdirs, _files in os.walk(staging):
            os.chmod(directory, 0o700)
        fresh = staging / DATA_PREFIX
        if not fresh.exists():
            fresh.mkdir(mode=0o700)  # an empty backup restores an empty data directory
        previous = _swap(fresh, data_dir)
        if caddy_storage is not None and manifest.caddy:
            _replace_caddy_storage(staging / CADDY_PREFIX, caddy_storage)
    except OSError as exc:
        raise BackupError(
            f"restoring into {data_dir} failed, nothing was replaced ({exc}); fix that "
            "(free disk space, say) and restore again"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest, previous


# Files from the data directory get owner-only modes; Caddy's keep theirs.
_MODE_MASKS = {DATA_PREFIX: 0o700, CADDY_PREFIX: 0o777}


def _unpack(archive: Path, staging: Path, progress: ProgressHook | None) -> None:
    """Unpack `archive` into `staging`.

    An error reading the archive means it is no readable backup; one writing
    the files (a full disk) is this machine's and said as such.
    """
    staging.mkdir(mode=0o700)
    with _open(archive) as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            name = PurePosixPath(member.name)
            mask = _MODE_MASKS.get(name.parts[0] + "/") if name.parts else None
            if mask is None or not member.isfile() or name.is_absolute() or ".." in name.parts:
                raise BackupError(f"{archive} holds an unexpected entry {member.name!r}")
            # By hand rather than tar.extract(filter=...), which Python 3.11.2
            # (Debian 12's) lacks: regular files only, no set-id bits, and
            # O_EXCL, so nothing in the archive can replace what it made.
            target = staging.joinpath(*name.parts)
            source = tar.extractfile(member)
            assert source is not None
            with _writing_file(target, (member.mode & mask) or 0o600) as write:
                while chunk := source.read(_CHUNK):
                    write(chunk)
            if progress:
                progress(member.size)


@contextlib.contextmanager
def _writing_file(target: Path, mode: int) -> Iterator[Callable[[bytes], object]]:
    """A new file (O_EXCL) with `mode`, not narrowed by umask; its writes' errors are BackupError."""
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, mode)
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    with os.fdopen(fd, "wb") as out:

        def write(chunk: bytes) -> object:
            try:
                return out.write(chunk)
            except OSError as exc:
                raise _cannot_write(target, exc) from None

        yield write
        try:
            out.flush()
        except OSError as exc:
            raise _cannot_write(target, exc) from None


def _cannot_write(target: Path, exc: OSError) -> BackupError:
    return BackupError(
        f"cannot write {target} while restoring ({exc.strerror or exc}); nothing was "
        "replaced: fix that (free disk space, say) and restore again"
    )


def _verify(root: Path, entries: list[Entry], archive: Path) -> None:
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    expected = {entry.path for entry in entries}
    if found != expected:
        odd = sorted(found ^ expected)[:5]
        raise BackupError(
            f"{archive} does not match its manifest (files {odd}); it is damaged, "
            "use another backup"
        )
    for entry in entries:
        digest = hashlib.sha256()
        with (root / entry.path).open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != entry.sha256:
            raise BackupError(
                f"{archive}: {entry.path} fails its checksum; the file is damaged, "
                "use another backup"
            )


def _swap(fresh: Path, destination: Path) -> Path | None:
    """Put the verified tree in place; return where the old one went (if any)."""
    if not destination.exists():
        os.rename(fresh, destination)
        return None
    # The second's stamp reads well; the random part keeps two restores in one apart.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    previous = destination.with_name(f"{destination.name}.before-restore-{stamp}")
    os.rename(destination, previous)
    try:
        os.rename(fresh, destination)
    except OSError:
        os.rename(previous, destination)
        raise
    if is_empty(previous):
        previous.rmdir()
        return None
    return previous


def _replace_caddy_storage(fresh: Path, storage: Path) -> None:
    """Caddy's storage becomes the backup's; the one it replaces is deleted."""
    storage.parent.mkdir(parents=True, exist_ok=True)
    # Beside the storage first: it may be on another file system than the data.
    incoming = storage.with_name(f".{storage.name}.restore-{secrets.token_hex(4)}")
    try:
        shutil.move(fresh, incoming)
        previous = _swap(incoming, storage)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    if previous is not None:
        shutil.rmtree(previous)
