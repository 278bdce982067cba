"""Backup and restore of a data directory: every object, table item and secret comes back."""

from __future__ import annotations

import asyncio
import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoestring import App, Settings
from shoestring.cli import main
from shoestring.deploy.backup import (
    MANIFEST,
    create_backup,
    read_manifest,
    restore_backup,
)
from shoestring.deploy.errors import BackupError, RestoreRefused
from tests.backends import running

ITEMS = [{"id": f"n{i}", "owner": f"u{i % 3}", "text": "x" * i} for i in range(50)]
OBJECTS = {f"photos/{i}.jpg": bytes([i]) * (i * 1000 + 1) for i in range(20)}


def make_app(data_dir: Path) -> App:
    app = App("backuptest", settings=Settings(data_dir=data_dir))
    app.storage  # noqa: B018 - registers the service before it starts
    return app


async def fill(data_dir: Path) -> None:
    app = make_app(data_dir)
    notes = app.table("notes", key="id", indexes=["owner"])
    async with running(app):
        for item in ITEMS:
            await notes.put(item)
        bucket = await app.storage.create_bucket("media")
        for key, body in OBJECTS.items():
            await bucket.put(key, body)
        # Written while the app is live: the backup must not need it stopped.
    app.secrets.set("stripe-token", "sk_live_very_secret")
    app.secrets.ensure("hmac-key")


async def contents(
    data_dir: Path,
) -> tuple[list[dict[str, object]], dict[str, bytes], dict[str, str]]:
    app = make_app(data_dir)
    notes = app.table("notes", key="id", indexes=["owner"])
    async with running(app):
        items = (await notes.scan(limit=1000)).items
        bucket = app.storage.bucket("media")
        objects = {}
        async for info in bucket.list(prefix=""):
            assert not isinstance(info, str)
            objects[info.key] = await (await bucket.get(info.key)).read()
    secrets = {name: app.secrets.get(name) for name in app.secrets.names()}
    return sorted(items, key=lambda i: str(i["id"])), objects, secrets


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    data_dir = tmp_path / "project" / "data"
    asyncio.run(fill(data_dir))
    return data_dir


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


def _rewrite(archive: Path, change: str) -> Path:
    """A copy of `archive` with one object body altered or one file dropped."""
    damaged = archive.with_name("damaged.tar.gz")
    with tarfile.open(archive) as source, tarfile.open(damaged, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("data/storage/data/"):
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
