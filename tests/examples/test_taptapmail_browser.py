"""taptapmail's page in Debian's chromium: register, confirm with the mailed code, send."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser import browser  # noqa: F401 - the fixture
from tests.examples.taptapmail import Client, start_taptapmail

pytestmark = pytest.mark.e2e


def test_register_confirm_and_send_from_the_page(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    server = start_taptapmail(tmp_path)
    context = browser.new_context()
    try:
        client = Client(server)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.base_url + "/")
        page.fill("#register-form [name=email]", "grace@example.org")
        page.fill("#register-form [name=device_name]", "Grace's laptop")
        page.click("#register-form button[type=submit]")
        page.wait_for_selector("#confirm:not([hidden])")
        assert "We mailed a code to grace@example.org" in page.inner_text("#status")

        page.fill("#confirm-form [name=code]", client.code_from_mail())
        page.click("#confirm-form button[type=submit]")
        page.wait_for_selector("#send:not([hidden])")
        assert page.inner_text("#me") == "grace@example.org"
        # the browser keeps the registration; the server never sees it again but in requests
        stored = page.evaluate("JSON.parse(localStorage.getItem('taptapmail'))")
        assert stored["email"] == "grace@example.org" and len(stored["client_id"]) == 36

        page.fill("#send-form [name=text]", "call the plumber")
        page.click("#send-form button[type=submit]")
        page.wait_for_selector("#status:has-text('Sent')")  # no eval: the page's CSP forbids it
        note = client.dev_mail(lambda m: m["subject"] == "call the plumber")
        assert note["to"] == ["grace@example.org"]

        # the bookmarklet's target, opened as the bookmarklet opens it
        bookmarklet = page.get_attribute("#bookmarklet", "href")
        assert bookmarklet is not None and bookmarklet.startswith("javascript:")
        assert f"{server.base_url}/send.html#" in bookmarklet
        popup = context.new_page()
        fragment = urlencode({"url": "https://example.com/post", "title": "A post"})
        popup.goto(f"{server.base_url}/send.html#{fragment}")
        popup.wait_for_selector("#status:has-text('Sent to your inbox')")
        link = client.dev_mail(lambda m: m["subject"] == "A post")
        assert link["text"].strip() == "https://example.com/post"
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log
