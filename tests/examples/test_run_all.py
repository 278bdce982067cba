"""examples/run: the README's first command serves every bundled example, and stops them all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.examples.conftest import EXAMPLES

pytestmark = pytest.mark.e2e


def _ready(url: str, deadline: float) -> httpx.Response:
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_every_example_is_served_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns("data", "__pycache__"))
    port = free_port()
    script = subprocess.Popen(
        [str(examples / "run")], env={**os.environ, "PORT": str(port), "SMTP_PORT": str(free_port())},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        _ready(f"http://127.0.0.1:{port}/_ready", deadline)
        _ready(f"http://127.0.0.1:{port + 1}/_ready", deadline)
        _ready(f"http://127.0.0.1:{port + 2}/_ready", deadline)
        _ready(f"http://127.0.0.1:{port + 3}/_ready", deadline)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert "<title>taptapmail</title>" in page.text
        assert "photos" in httpx.get(f"http://127.0.0.1:{port + 1}/", timeout=5).json()["upload"]
        texts = httpx.get(f"http://127.0.0.1:{port + 3}/content/demo/locales.json", timeout=5)
        assert texts.json()["default"] == "en"
    finally:
        script.send_signal(signal.SIGINT)
        output, _ = script.communicate(timeout=30)
    assert f"taptapmail: http://127.0.0.1:{port}/" in output
    for served in (port, port + 1, port + 2, port + 3):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{served}/_health", timeout=1)
