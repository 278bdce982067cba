"""A taptapmail server for the tests, and a client that speaks its API and reads its mail."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.examples.conftest import copy_example

ADDRESS = "Ada.Lovelace@Example.org"


def start_taptapmail(tmp_path: Path, **env: str) -> Server:
    server = Server(copy_example("taptapmail", tmp_path), env=env)
    server.wait_ready("/_ready")
    return server


class Client:
    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=10)

    def post(self, path: str, **body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def dev_mail(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The newest message in the dev mailbox matching `predicate` (waits for it)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for summary in self.http.get("/_dev/mail").json()["messages"]:
                if predicate(summary):
                    message: dict[str, Any] = self.http.get(f"/_dev/mail/{summary['id']}").json()
                    return message
            time.sleep(0.05)
        raise AssertionError("no such message in the dev mailbox")

    def code_from_mail(self, count: int = 1) -> str:
        """The code in the `count`-th newest confirmation mail."""
        seen: list[dict[str, Any]] = []

        def nth(summary: dict[str, Any]) -> bool:
            if "code" in (summary["subject"] or ""):
                seen.append(summary)
            return len(seen) >= count

        return code_in(self.dev_mail(nth)["text"])

    def registered(self, address: str = ADDRESS) -> str:
        """Register and confirm `address`; the client id."""
        assert self.post("/register", email=address, device_name="laptop").status_code == 202
        code = self.code_from_mail()
        response = self.post("/confirm", email=address, code=code)
        assert response.status_code == 200, response.text
        client_id: str = response.json()["client_id"]
        return client_id


def code_in(text: str) -> str:
    match = re.search(r"^[ \t]+(\d{6})\r?$", text, re.MULTILINE)
    assert match, text
    return match.group(1)
