# ruff: noqa: S324 - S3 ETags are MD5s

"""Bucket triggers: durable jobs, one per committed write, even across a crash."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from shoestring import App
from shoestring.config import JobsSettings
from shoestring.jobs import store
from shoestring.storage import BadDigest, Bucket, ObjectEvent, events
from shoestring.storage.digests import Expected
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def _until(condition: object, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)


def _watched_app(database_url: str, tmp_path: Path) -> tuple[App, Bucket, list[ObjectEvent]]:
    """An app whose `photos` bucket records every put event it hears."""
    app = make_app(database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05))
    photos = app.storage.bucket("photos")
    seen: list[ObjectEvent] = []

    @photos.on_put()
    async def on_put(event: ObjectEvent) -> None:
        seen.append(event)

    return app, photos, seen


async def test_each_committed_write_runs_its_trigger(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05))
    photos = app.storage.bucket("photos")
    seen: list[ObjectEvent] = []

    @photos.on_put("images/*")
    async def on_image(event: ObjectEvent) -> None:
        seen.append(event)

    @photos.on_delete()
    async def on_delete(event: ObjectEvent) -> None:
        seen.append(event)

    async with running(app):
        await photos.put("images/a.png", b"png")
        await photos.put("docs/b.txt", b"txt")  # no trigger for this pattern
        await photos.copy("docs/b.txt", "images/b.txt")
        assert await photos.delete("images/a.png") is True
        assert await photos.delete("never-there") is False  # nothing removed: no event
        await _until(lambda: len(seen) >= 3)
        await asyncio.sleep(0.3)
        jobs = await store.records(app.db.database, None, 100)
    assert sorted((e.name, e.key) for e in seen) == [
        ("ObjectCreated:Copy", "images/b.txt"),
        ("ObjectCreated:Put", "images/a.png"),
        ("ObjectRemoved:Delete", "images/a.png"),
    ]
    put = next(e for e in seen if e.name == "ObjectCreated:Put")
    assert (put.bucket, put.size, put.etag) == ("photos", 3, f'"{hashlib.md5(b"png").hexdigest()}"')
    assert put.time.year >= 2026
    # the delete of an absent key queued an intent and cancelled it
    assert sorted(j.state for j in jobs) == ["cancelled", "succeeded", "succeeded", "succeeded"]


async def test_a_failed_write_cancels_its_trigger(database_url: str, tmp_path: Path) -> None:
    app, photos, seen = _watched_app(database_url, tmp_path)

    async with running(app):
        with pytest.raises(BadDigest):
            await photos.put(
                "a.png", b"png", expected=Expected(content_md5="AAAAAAAAAAAAAAAAAAAAAA==")
            )
        await asyncio.sleep(0.3)
        jobs = await store.records(app.db.database, None, 10)
    assert seen == []
    assert [j.state for j in jobs] == ["cancelled"]


async def test_a_write_whose_process_died_before_reporting_is_still_delivered(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object committed but the process died before its trigger was made due."""
    monkeypatch.setattr(events, "INTENT_DELAY", 0.5)
    app, photos, seen = _watched_app(database_url, tmp_path)

    async def dies(job_id: str, args: object) -> bool:
        raise SystemExit("killed between the commit and the trigger")

    async with running(app):
        monkeypatch.setattr(app.jobs, "make_due", dies)
        with pytest.raises(SystemExit):
            await photos.put("landed.png", b"12345")
        assert await photos.read("landed.png") == b"12345"
        await asyncio.sleep(0.2)
        assert seen == []  # not before the delay
        await _until(lambda: len(seen) >= 1)
    assert [(e.name, e.key, e.size) for e in seen] == [("ObjectCreated:Put", "landed.png", 5)]


async def test_an_intent_whose_write_never_happened_delivers_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died after queuing the intent, before the object was written."""
    monkeypatch.setattr(events, "INTENT_DELAY", 0.2)
    app, photos, seen = _watched_app(database_url, tmp_path)

    async def never_cancelled(database: object, job_id: str) -> bool:
        return False

    async with running(app):
        monkeypatch.setattr(events.store, "cancel", never_cancelled)
        monkeypatch.setattr(app.storage.backend, "put", _killed)
        with pytest.raises(SystemExit):
            await photos.put("lost.png", b"12345")
        await _until(lambda: False, 1.0)
        jobs = await store.records(app.db.database, None, 10)
    assert seen == []
    assert [j.state for j in jobs] == ["succeeded"]  # it ran, found no object, delivered nothing


async def _killed(*args: object) -> None:
    raise SystemExit("killed before the write")


async def test_inside_a_tables_transaction_triggers_commit_with_it(
    database_url: str, tmp_path: Path
) -> None:
    app, photos, seen = _watched_app(database_url, tmp_path)
    notes = app.table("notes")
    async with running(app):
        async with asyncio.timeout(10):  # the write must not wait on its own transaction
            async with app.tables.transaction():
                await photos.put("kept.png", b"1")
                await notes.put({"id": "kept"})
            with pytest.raises(RuntimeError):
                async with app.tables.transaction():
                    await photos.put("undone.png", b"2")
                    raise RuntimeError("abort")
        await _until(lambda: len(seen) >= 1)
        await asyncio.sleep(0.3)
    assert [e.key for e in seen] == ["kept.png"]
