"""Table triggers: a job per committed write, enqueued in the write's transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shoestring.config import JobsSettings
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def test_every_committed_write_runs_the_trigger_once(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05))
    notes = app.table("notes")
    events: list[dict[str, Any]] = []

    @notes.on_change()
    async def index_note(event: dict[str, Any]) -> None:
        events.append(event)

    async with running(app):
        await notes.put({"id": "n1", "text": "hi"})
        await notes.update("n1", set={"text": "hello"})
        await notes.batch_put([{"id": "n2"}])
        assert await notes.delete("n1") is True
        assert await notes.delete("absent") is False  # nothing deleted: no event
        with pytest.raises(RuntimeError):
            async with app.tables.transaction():
                await notes.put({"id": "rolled-back"})
                raise RuntimeError("abort")
        for _ in range(200):
            if len(events) >= 4:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    ops = sorted((e["op"], e["key"]) for e in events)
    assert ops == [("delete", "n1"), ("put", "n1"), ("put", "n2"), ("update", "n1")]
    update = next(e for e in events if e["op"] == "update")
    assert update["item"] == {"id": "n1", "text": "hello"} and update["table"] == "notes"
    assert next(e for e in events if e["op"] == "delete")["item"] is None
