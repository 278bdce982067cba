"""Debian's caddy as a real proxy in front of `shoestring run` processes.

Required under CI (`CI=true`, see .ci/run); elsewhere its tests skip with
the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port


@pytest.fixture
def caddy_binary() -> str:
    binary = shutil.which("caddy")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("caddy is required under CI (apt-get install caddy)")
        pytest.skip("caddy is not installed (apt-get install caddy)")
    return binary


@pytest.fixture
def caddy(caddy_binary: str, tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    processes: list[subprocess.Popen[bytes]] = []

    def start(site_block: str) -> str:
        port = free_port()
        config = tmp_path / "Caddyfile"
        config.write_text(
            "{\n\tadmin off\n\tauto_https off\n"
            f"\tstorage file_system {tmp_path / 'caddy'}\n}}\n"
            + site_block.replace(":80 {", f":{port} {{", 1)
        )
        processes.append(
            subprocess.Popen(
                [caddy_binary, "run", "--config", str(config), "--adapter", "caddyfile"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")},
            )
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/_health", timeout=1)
                return url
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("caddy did not start")

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)
