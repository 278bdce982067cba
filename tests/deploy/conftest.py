"""A data directory with table items, objects and secrets, and a way to read them all back."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from shoestring import App, Settings
from shoestring.deploy.layout import Layout, Target
from shoestring.deploy.remote import Deployment
from shoestring.deploy.ssh import Host
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


class FakeHost(Host):
    """A deploy host that records the commands it is given and answers from `answers`.

    `answers` maps a piece of a command to (stdout, stderr, status); the first
    that matches answers, else `cat` fails (no such file) and the rest succeed.
    """

    def __init__(self, answers: dict[str, tuple[bytes, str, int]] | None = None) -> None:
        self.target = Target("root", "203.0.113.7", 22)
        self.answers = answers or {}
        self.commands: list[tuple[str, str | None]] = []  # (command, as_user)
        self.uploads: list[tuple[PurePosixPath, int, str | None]] = []
        self.stdin: dict[str, bytes] = {}  # command -> what it was sent

    def sent_to(self, path: PurePosixPath | str) -> bytes:
        """What was written to `path` (by write_file)."""
        for command, data in self.stdin.items():
            if command.endswith(" " + shlex.quote(str(path))):
                return data
        raise AssertionError(f"nothing was written to {path}")

    async def _execute(
        self,
        command: str,
        *,
        input: bytes | None,
        as_user: str | None,
        env: dict[str, str] | None,
        time_limit: float | None,
    ) -> tuple[bytes, str, int]:
        self.commands.append((command, as_user))
        if input is not None:
            self.stdin[command] = input
        for piece, answer in self.answers.items():
            if piece in command:
                return answer
        return (b"", "no such file", 1) if command.startswith("cat ") else (b"", "", 0)

    async def upload(
        self,
        local: Path,
        remote: PurePosixPath,
        *,
        mode: int = 0o644,
        owner: str = "root",
        as_user: str | None = None,
    ) -> None:
        self.uploads.append((remote, mode, as_user))

    def as_root(self) -> list[str]:
        return [command for command, user in self.commands if user is None]


class Steps:
    """A Reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        yield

    def note(self, text: str) -> None:
        self.notes.append(text)


def fake_deployment(
    project_dir: Path, settings: Settings, answers: dict[str, tuple[bytes, str, int]] | None = None
) -> tuple[Deployment, FakeHost]:
    host = FakeHost(answers)
    layout = Layout.of(settings, settings.project.name or project_dir.name)
    return Deployment(host, settings, layout, project_dir, Steps()), host
