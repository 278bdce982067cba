"""Backup and restore of a data directory: every object, table item and secret comes back."""

from __future__ import annotations

import asyncio
import errno
import gzip
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoestring.cli import main
from shoestring.deploy.backup import (
    MANIFEST,
    add_caddy_storage,
    create_backup,
    read_manifest,
    restore_backup,
)
from shoestring.deploy.errors import BackupError, RestoreRefused
from tests.deploy.conftest import ITEMS, OBJECTS, contents
from tests.e2e.conftest import Server


def test_everything_comes_back(filled: Path, tmp_path: Path) -> None:
    before = asyncio.run(contents(filled))
    archive = tmp_path / "b.tar.gz"
    manifest = create_backup(filled, archive, project="backuptest")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # it holds the secrets
    kinds = {entry.path: entry.kind for entry in manifest.entries}
    assert kinds["shoestring.db"] == "sqlite"
    assert kinds["storage/index.sqlite"] == "sqlite"
    assert not any(path.endswith(("-wal", "-shm")) for path in kinds)

    target = tmp_path / "elsewhere" / "data"
    restored, previous = restore_backup(archive, target)
    assert previous is None and restored == read_manifest(archive)
    after = asyncio.run(contents(target))
    assert after == before
    assert len(after[0]) == len(ITEMS) and after[1] == OBJECTS
    assert after[2]["stripe-token"] == "sk_live_very_secret"
    assert stat.S_IMODE((target / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "secrets" / "stripe-token").stat().st_mode) == 0o600


def test_restore_refuses_to_overwrite_data_without_force(filled: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    (filled / "secrets" / "stripe-token").write_text("changed since")
    with pytest.raises(RestoreRefused, match="--force"):
        restore_backup(archive, filled)
    assert (filled / "secrets" / "stripe-token").read_text() == "changed since"

    _, previous = restore_backup(archive, filled, force=True)
    assert (filled / "secrets" / "stripe-token").read_text() == "sk_live_very_secret"
    assert previous is not None
    assert (previous / "secrets" / "stripe-token").read_text() == "changed since"


def _rewrite(archive: Path, change: str, prefix: str = "data/storage/data/") -> Path:
    """A copy of `archive` with one file under `prefix` (an object body) altered or dropped."""
    damaged = archive.with_name("damaged.tar.gz")
    with tarfile.open(archive) as source, tarfile.open(damaged, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith(prefix):
                if change == "drop":
                    change = "done"
                    continue
                if change == "flip":
                    change, data = "done", bytes([data[0] ^ 1]) + data[1:]
            target.addfile(member, io.BytesIO(data))
    return damaged


@pytest.mark.parametrize("change", ["flip", "drop"])
def test_a_damaged_backup_is_refused_before_anything_changes(
    filled: Path, tmp_path: Path, change: str
) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    damaged = _rewrite(archive, change)
    target = tmp_path / "restore" / "data"
    with pytest.raises(BackupError, match="damaged"):
        restore_backup(damaged, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the staging directory is gone too


def test_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(BackupError, match="not a readable backup"):
        read_manifest(junk)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(BackupError, match=f"no {MANIFEST}"):
        read_manifest(empty)


def test_the_cli_backs_up_and_restores(filled: Path, tmp_path: Path) -> None:
    project = filled.parent
    runner = CliRunner()
    archive = tmp_path / "cli.tar.gz"
    result = runner.invoke(main, ["backup", "--project", str(project), "--to", str(archive)])
    assert result.exit_code == 0, result.output
    assert archive.exists()
    result = runner.invoke(main, ["restore", "--project", str(project), str(archive)])
    assert result.exit_code == 1
    assert "--force" in result.output
    result = runner.invoke(main, ["restore", "--project", str(project), str(archive), "--force"])
    assert result.exit_code == 0, result.output
    assert "restored" in result.output


def test_a_restore_waits_for_the_app_to_stop_and_a_killed_one_leaves_no_mark(
    filled: Path, tmp_path: Path
) -> None:
    project = filled.parent
    (project / "app.py").write_text("from shoestring import App\n\napp = App('backuptest')\n")
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    restore = ["restore", "--project", str(project), str(archive), "--force"]
    server = Server(project)
    try:
        server.wait_ready()
        refused = CliRunner().invoke(main, restore)
        assert refused.exit_code == 1 and "the app is running" in refused.output
        assert list(project.glob("data.before-restore-*")) == []  # nothing moved
    finally:
        server.kill()  # SIGKILL: the kernel drops the lock with the process
    restored = CliRunner().invoke(main, restore)
    assert restored.exit_code == 0, restored.output


@pytest.mark.parametrize("name", ["data/../../evil", "/etc/evil", "elsewhere/x", "data/link"])
def test_entries_outside_the_data_directory_are_refused(
    filled: Path, tmp_path: Path, name: str
) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(evil, "w:gz") as target:
        for member in source:
            target.addfile(member, source.extractfile(member))
        info = tarfile.TarInfo(name)
        if name.endswith("link"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            target.addfile(info)
        else:
            info.size = 4
            target.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(BackupError, match="unexpected entry"):
        restore_backup(evil, tmp_path / "restore" / "data")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "restore" / "data").exists()


# Caddy's storage as certmagic writes it: directories 0700, files 0600.
CADDY_FILES = {
    "certificates/acme-v02.api.letsencrypt.org-directory/app.example/app.example.crt": 0o600,
    "certificates/acme-v02.api.letsencrypt.org-directory/app.example/app.example.key": 0o600,
    "certificates/acme-v02.api.letsencrypt.org-directory/app.example/app.example.json": 0o600,
    "acme/acme-v02.api.letsencrypt.org-directory/users/ops@app.example/ops.key": 0o600,
    "instance.uuid": 0o600,
    "last_clean.json": 0o640,
}


@pytest.fixture
def caddy_storage(tmp_path: Path) -> Path:
    storage = tmp_path / "host" / "caddy"
    for number, (name, mode) in enumerate(CADDY_FILES.items()):
        path = storage / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(f"{name} {number}\n")
        path.chmod(mode)
    # Held only while a certificate is obtained: never backed up.
    (storage / "locks").mkdir(mode=0o700)
    (storage / "locks" / "issue_cert_app.example.lock").write_text("{}")
    return storage


def storage_tar(storage: Path) -> io.BytesIO:
    """The stream `shoestring backup --remote` reads from the host, made the same way."""
    done = subprocess.run(["tar", "-C", str(storage), "-cf", "-", "."], capture_output=True)
    assert done.returncode == 0, done.stderr
    return io.BytesIO(done.stdout)


@pytest.fixture
def host_backup(filled: Path, caddy_storage: Path, tmp_path: Path) -> Path:
    """What `shoestring backup --remote` writes: the host's data and its Caddy storage."""
    data_only = tmp_path / "data.tar.gz"
    create_backup(filled, data_only, project="backuptest")
    add_caddy_storage(data_only, storage_tar(caddy_storage), tmp_path / "host.tar.gz")
    return tmp_path / "host.tar.gz"


def new_host_storage(tmp_path: Path) -> Path:
    """A new host's Caddy storage: Caddy has started once and made one of its own."""
    storage = tmp_path / "newhost" / "caddy"
    storage.mkdir(parents=True)
    (storage / "instance.uuid").write_text("new host")
    return storage


def test_caddys_storage_comes_back_with_its_modes(
    host_backup: Path, filled: Path, caddy_storage: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(host_backup)
    assert manifest.format == 2
    assert {entry.path for entry in manifest.caddy} == set(CADDY_FILES)
    assert manifest.entries == read_manifest(tmp_path / "data.tar.gz").entries
    assert stat.S_IMODE(host_backup.stat().st_mode) == 0o600

    storage = new_host_storage(tmp_path)
    target = tmp_path / "newhost" / "data"
    restore_backup(host_backup, target, caddy_storage=storage)
    for name, mode in CADDY_FILES.items():
        assert (storage / name).read_text() == (caddy_storage / name).read_text()
        assert stat.S_IMODE((storage / name).stat().st_mode) == mode
    assert not (storage / "locks").exists()
    assert sorted(p.name for p in storage.parent.iterdir()) == ["caddy", "data"]
    assert asyncio.run(contents(target)) == asyncio.run(contents(filled))


def test_without_caddy_storage_a_backup_is_format_1_and_leaves_caddy_alone(
    filled: Path, caddy_storage: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    with tarfile.open(archive) as tar:
        raw = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert raw["format"] == 1 and "caddy" not in raw  # what every shoestring reads
    before = {p: p.read_bytes() for p in caddy_storage.rglob("*") if p.is_file()}
    restore_backup(archive, tmp_path / "restored", caddy_storage=caddy_storage)
    assert {p: p.read_bytes() for p in caddy_storage.rglob("*") if p.is_file()} == before


def test_a_local_restore_leaves_caddys_files_out(host_backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "laptop" / "data"
    restore_backup(host_backup, target)
    assert [p.name for p in target.parent.iterdir()] == ["data"]
    assert not any("certificates" in str(p) for p in target.rglob("*"))


def test_a_damaged_caddy_file_is_refused_before_anything_changes(
    host_backup: Path, tmp_path: Path
) -> None:
    damaged = _rewrite(host_backup, "flip", prefix="caddy/")
    storage = new_host_storage(tmp_path)
    with pytest.raises(BackupError, match="fails its checksum"):
        restore_backup(damaged, tmp_path / "newhost" / "data", caddy_storage=storage)
    assert [p.name for p in storage.iterdir()] == ["instance.uuid"]
    assert [p.name for p in storage.parent.iterdir()] == ["caddy"]


@pytest.mark.parametrize("name", ["../evil", "/etc/evil"])
def test_caddy_storage_entries_outside_it_are_refused(
    filled: Path, tmp_path: Path, name: str
) -> None:
    data_only = tmp_path / "data.tar.gz"
    create_backup(filled, data_only, project="backuptest")
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    stream.seek(0)
    with pytest.raises(BackupError, match="unexpected entry"):
        add_caddy_storage(data_only, stream, tmp_path / "host.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tar.gz", "project"]


def test_a_newer_format_says_which_shoestring_reads_it(filled: Path, tmp_path: Path) -> None:
    archive = tmp_path / "future.tar.gz"
    body = json.dumps({"format": 3, "project": "p", "created": 0, "shoestring": "9.0"}).encode()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(BackupError, match=r"format 3; this shoestring reads formats 1, 2: .*9\.0"):
        read_manifest(archive)


def test_two_restores_in_one_second_keep_both_previous_directories(
    filled: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    _, first = restore_backup(archive, filled, force=True)
    _, second = restore_backup(archive, filled, force=True)
    assert first is not None and second is not None and first != second
    assert first.is_dir() and second.is_dir()


def test_a_full_disk_is_not_called_a_damaged_backup(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    real_open = os.open

    def full(path: str, *args: object, **kwargs: object) -> int:
        if ".restore-" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", full)
    target = tmp_path / "target"
    with pytest.raises(BackupError, match="No space left on device") as raised:
        restore_backup(archive, target)
    assert "not a readable backup" not in str(raised.value)
    assert not target.exists()


def test_another_projects_backup_needs_force(filled: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    create_backup(filled, archive, project="backuptest")
    target = tmp_path / "other" / "data"
    with pytest.raises(RestoreRefused, match="a backup of 'backuptest', not of 'other'"):
        restore_backup(archive, target, project="other")
    assert not target.exists()
    restore_backup(archive, target, project="other", force=True)
    assert (target / "shoestring.db").exists()
