"""kill -9 after send() returned and before delivery: delivered after restart."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shoestring.config import JobsSettings, MailSettings
from tests.backends import make_app, running
from tests.mail.conftest import Sink

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shoestring import App, Settings
    from shoestring.config import DatabaseSettings, JobsSettings, MailSettings

    app = App("crashmail", settings=Settings(
        data_dir=Path(sys.argv[2]), database=DatabaseSettings(url=sys.argv[1]),
        jobs=JobsSettings(worker=False), mail=MailSettings(transport=sys.argv[3])))

    async def main() -> None:
        app.mail
        await app.services.start_all()
        for n in range(5):
            await app.mail.send(to=f"user{n}@example.net", subject=f"n{n}", text="body")
        print("sent", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_queued_mail_survives_kill_9(database_url: str, tmp_path: Path, sink: Sink) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SENDER, database_url, str(tmp_path / "data"), sink.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "sent"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert sink.received == []

    app = make_app(
        database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05),
        mail=MailSettings(transport=sink.url, retry_backoff=0.05),
    )  # fmt: skip
    app.mail  # noqa: B018
    async with running(app):
        deadline = time.monotonic() + 15
        while len(sink.received) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    assert sorted(r["to"][0] for r in sink.received) == [f"user{n}@example.net" for n in range(5)]
