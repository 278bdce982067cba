"""`shoestring run` with the SMTP server, driven by swaks: nothing acknowledged is lost."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.e2e

APP = """
from pathlib import Path

from shoestring import App

app = App("mailroom")


@app.on_mail("*@in.example")
async def keep(message) -> None:
    with (Path(__file__).parent / "received.txt").open("a") as out:
        out.write(f"{message.recipient} {message.subject}\\n")
"""


def _swaks(port: int, to: str, subject: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("swaks") is None:
        pytest.fail("swaks is needed (apt-get install swaks)")
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--from", "ada@elsewhere.example",
         "--to", to, "--header", f"Subject: {subject}", "--body", "hello", "--timeout", "10"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def _lines(path: Path) -> list[str]:
    """The complete lines written to `path` so far."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


def _mailroom(tmp_path: Path) -> tuple[Path, int]:
    """A project taking mail for in.example on a free SMTP port: its directory and the port."""
    project = tmp_path / "mailroom"
    project.mkdir()
    (project / "app.py").write_text(APP)
    smtp_port = free_port()
    (project / "shoestring.toml").write_text(
        f'[mail.inbound]\nenabled = true\nport = {smtp_port}\ndomains = ["in.example"]\n'
    )
    return project, smtp_port


def test_a_message_acknowledged_before_a_kill_9_is_handled_after_restart(
    tmp_path: Path,
) -> None:
    project, smtp_port = _mailroom(tmp_path)
    received = project / "received.txt"

    # first run: the job worker is off, so the message can only be in the spool
    first = Server(project, env={"SHOESTRING_JOBS__WORKER": "false"})
    try:
        first.wait_ready("/_ready")
        relayed = _swaks(smtp_port, "victim@elsewhere.example", "relay me")
        assert relayed.returncode != 0 and "550 5.7.1" in relayed.stdout
        sent = _swaks(smtp_port, "notes@in.example", "kept across a crash")
        assert sent.returncode == 0, sent.stdout
        assert "250 2.0.0 Ok: queued as" in sent.stdout
    finally:
        first.kill()  # SIGKILL, right after the 250
    assert not received.exists()

    second = Server(project)
    try:
        second.wait_ready("/_ready")
        deadline = time.monotonic() + 15
        # The handler creates the file and then writes its line: wait for the line.
        while not _lines(received) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _lines(received) == ["notes@in.example kept across a crash"]
    finally:
        assert second.terminate() == 0, second.log
    for server in (first, second):
        assert "ada@elsewhere.example" not in server.log and "notes@in.example" not in server.log


def test_two_releases_share_the_smtp_port_while_one_replaces_the_other(tmp_path: Path) -> None:
    """A redeploy starts the new release beside the old one: both must take mail on one port."""
    project, smtp_port = _mailroom(tmp_path)
    old = Server(project)
    new: Server | None = None
    try:
        old.wait_ready("/_ready")
        assert _swaks(smtp_port, "notes@in.example", "before").returncode == 0
        new = Server(project)
        new.wait_ready("/_ready")  # listening on the same port, not refused for it
        assert _swaks(smtp_port, "notes@in.example", "during").returncode == 0
        assert old.terminate() == 0, old.log
        sent = _swaks(smtp_port, "notes@in.example", "after")
        assert sent.returncode == 0, sent.stdout
        received = project / "received.txt"
        # a message the old release had claimed but not handled waits for its lease
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_lines(received)) < 3:
            time.sleep(0.1)
        assert sorted(_lines(received)) == [
            "notes@in.example after", "notes@in.example before", "notes@in.example during",
        ]  # fmt: skip
    finally:
        old.kill()
        if new is not None:
            assert new.terminate() == 0, new.log
