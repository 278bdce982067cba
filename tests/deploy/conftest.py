"""A data directory with table items, objects and secrets, and a way to read them all back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoestring import App, Settings
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
