"""Real `shoestring` processes on loopback, driven by a real HTTP client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoestring.cli.project import create_project

pytestmark = pytest.mark.e2e

SHOESTRING = shutil.which("shoestring") or str(Path(sys.executable).with_name("shoestring"))


def run_cli(
    project: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`shoestring ARGS --project PROJECT`, as a user types it."""
    return subprocess.run(
        [SHOESTRING, *args, "--project", str(project)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A `shoestring <command>` child process with its output in a file."""

    def __init__(
        self, project: Path, *args: str, command: str = "run", env: dict[str, str] | None = None
    ) -> None:
        self.project = project
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Beside the project, not in it: `dev` would reload on every line.
        self.log_path = project.parent / f"{command}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [SHOESTRING, command, str(project), "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def wait_ready(self, path: str = "/_health", timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh `shoestring new` project."""
    directory = tmp_path / "demo"
    create_project(directory)
    return directory


@pytest.fixture
def start(project: Path) -> Iterator[type[Server]]:
    """Start servers with `start(project, *args)`; all are killed after the test."""
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, project: Path, *args: str, command: str = "run") -> None:
            super().__init__(project, *args, command=command)
            started.append(self)

    yield Tracked
    for server in started:
        server.kill()
