"""An inline-cms server for the tests, and an editor that speaks its API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.examples.conftest import copy_example
from tests.examples.taptapmail import Client, code_in

EDITOR = "Editor@Example.org"  # as sites.toml lists it, but for case

SITES = """
[demo]
locales = ["en", "de"]
editors = ["editor@example.org"]

[other]
locales = ["en"]
editors = ["someone@example.net"]
"""


def start_inline_cms(tmp_path: Path) -> Server:
    project = copy_example("inline-cms", tmp_path)
    (project / "sites.toml").write_text(SITES)
    server = Server(project)
    server.wait_ready("/_ready")
    return server


class Editor(Client):
    """Signs in to a site, then edits and publishes its texts."""

    def __init__(self, server: Server, site: str = "demo") -> None:
        super().__init__(server)
        self.site = site
        self.token = ""

    def sign_in(self, email: str = EDITOR) -> str:
        response = self.post("/api/signin", site=self.site, email=email)
        assert (response.status_code, response.json()) == (202, {"status": "code_sent"})
        mail = self.dev_mail(lambda m: "sign-in code" in (m["subject"] or ""))
        confirmed = self.post(
            "/api/confirm", site=self.site, email=email, code=code_in(mail["text"])
        )
        assert confirmed.status_code == 200, confirmed.text
        self.token = confirmed.json()["token"]
        return self.token

    def call(self, method: str, path: str, **body: Any) -> httpx.Response:
        return self.http.request(
            method, f"/api/sites/{self.site}{path}", json=body or None,
            headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
        )  # fmt: skip

    def draft(self, locale: str, key: str, text: str) -> None:
        response = self.call("PUT", f"/{locale}/drafts/{key}", text=text)
        assert response.status_code == 200, response.text

    def publish(self, locale: str) -> dict[str, Any]:
        response = self.call("POST", f"/{locale}/publish")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result
