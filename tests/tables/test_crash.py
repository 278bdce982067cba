"""kill -9 in the middle of a stream of writes loses no acknowledged item."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.backends import make_app, running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shoestring import App, Settings
    from shoestring.config import DatabaseSettings

    app = App("crash", settings=Settings(
        data_dir=Path(sys.argv[2]), database=DatabaseSettings(url=sys.argv[1])))
    notes = app.table("notes", indexes=["batch"])

    async def main() -> None:
        await app.services.start_all()
        n = 0
        while True:
            await notes.put({"id": f"n{n}", "batch": n % 7, "body": "x" * 512})
            print(n, flush=True)  # acknowledged: put() returned
            n += 1

    asyncio.run(main())
    """
)


async def test_kill_9_mid_writes_loses_no_acknowledged_item(
    database_url: str, tmp_path: Path
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, database_url, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 30
    while acknowledged < 300 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    writer.send_signal(signal.SIGKILL)
    rest = writer.stdout.read()  # anything acknowledged before the kill landed
    writer.wait()
    if rest.strip():
        acknowledged = int(rest.split()[-1])
    assert acknowledged >= 300, "the writer did not get going"

    app = make_app(database_url, tmp_path)
    notes = app.table("notes", indexes=["batch"])
    async with running(app):
        found = await notes.batch_get([f"n{n}" for n in range(acknowledged + 1)])
        missing = [n for n, item in enumerate(found) if item is None]
        assert missing == []
        assert all(item is not None and len(item["body"]) == 512 for item in found)
        in_index = 0
        for batch in range(7):
            cursor = None
            while True:
                page = await notes.query(batch, index="batch", limit=1000, cursor=cursor)
                in_index += len(page.items)
                if not (cursor := page.cursor):
                    break
        total = await app.db.fetchone('SELECT count(*) FROM "tbl_notes"')
        assert total is not None and in_index == total[0] >= acknowledged + 1
