"""taptapmail's page in Debian's chromium: register, confirm with the mailed code, send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.browser import browser  # noqa: F401 - the fixture
from tests.e2e.conftest import Server
from tests.examples.taptapmail import Client, code_in, start_taptapmail

pytestmark = pytest.mark.e2e

GRACE = "grace@example.org"
MALLORY = "mallory@attacker.example"
STORED = "JSON.parse(localStorage.getItem('taptapmail'))"  # this browser's registration


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
        popup.click("#send-page")
        popup.wait_for_selector("#status:has-text('Sent to your inbox')")
        link = client.dev_mail(lambda m: m["subject"] == "A post")
        assert link["text"].strip() == "https://example.com/post"
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log


def registered_page(context: Any, server: Server, address: str) -> Any:
    """A page of `context` whose browser is registered to `address`, as the page registers it."""
    client_id = Client(server).registered(address)
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.evaluate(
        "([client_id, email]) => localStorage.setItem('taptapmail', JSON.stringify({client_id, email}))",
        [client_id, address],
    )
    return page


def mailed_code(client: Client, address: str) -> str:
    return code_in(
        client.dev_mail(lambda m: m["to"] == [address] and "code" in m["subject"])["text"]
    )


def test_the_mailed_link_registers_a_new_device_in_one_click(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start_taptapmail(tmp_path)
    context = browser.new_context()
    context.set_default_timeout(5000)
    try:
        client = Client(server)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        assert client.post("/register", email=GRACE, device_name="laptop").status_code == 202
        page.goto(f"{server.base_url}/#confirm={mailed_code(client, GRACE)}&email={quote(GRACE)}")
        page.wait_for_selector("#link:not([hidden])")
        assert f"Send notes from this device to {GRACE}?" in page.inner_text("#link")
        assert page.evaluate(STORED) is None and page.is_hidden("#register")
        page.click("#link-accept")
        page.wait_for_selector("#send:not([hidden])")
        assert page.inner_text("#me") == GRACE
        assert page.evaluate(STORED)["email"] == GRACE
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log


def test_a_link_for_another_address_replaces_the_registration_only_on_a_yes(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start_taptapmail(tmp_path)
    context = browser.new_context()
    context.set_default_timeout(5000)
    try:
        client = Client(server)
        page = registered_page(context, server, GRACE)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        registration = page.evaluate(STORED)

        # Mallory mails herself a code and gets grace to open a link with it.
        assert client.post("/register", email=MALLORY, device_name="x").status_code == 202
        attack = f"{server.base_url}/#confirm={mailed_code(client, MALLORY)}&email={quote(MALLORY)}"
        page.goto("about:blank")
        page.goto(attack)
        page.wait_for_timeout(500)  # the page had its chance to act on the link by itself
        assert page.evaluate(STORED) == registration
        page.wait_for_selector("#link:not([hidden])")
        question = page.inner_text("#link")
        assert (
            f"This device sends your notes to {GRACE}. Send them to {MALLORY} instead?" in question
        )
        assert page.is_hidden("#send")
        page.click("#link-decline")
        page.wait_for_selector("#status:has-text('Nothing changed')")
        assert page.inner_text("#me") == GRACE
        assert page.evaluate(STORED) == registration

        # Only a yes (the answer has the focus: Enter gives it) switches the device.
        page.goto("about:blank")
        page.goto(attack)
        page.wait_for_selector("#link:not([hidden])")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#me:has-text('{MALLORY}')")
        assert page.evaluate(STORED)["email"] == MALLORY

        # A link for the address the device already sends to: nothing to ask.
        page.evaluate(f"localStorage.setItem('taptapmail', '{json.dumps(registration)}')")
        page.goto("about:blank")
        page.goto(f"{server.base_url}/#confirm=123456&email={quote(GRACE)}")
        page.wait_for_selector(f"#status:has-text('This device already sends to {GRACE}')")
        assert page.is_hidden("#link") and page.evaluate(STORED) == registration
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log


def test_the_send_page_sends_only_on_the_users_click(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    server = start_taptapmail(tmp_path)
    context = browser.new_context()
    context.set_default_timeout(5000)
    try:
        client = Client(server)
        registered_page(context, server, GRACE).close()
        popup = context.new_page()
        errors: list[str] = []
        popup.on("pageerror", lambda error: errors.append(str(error)))
        # Any site can open it so, with a link of its choosing.
        fragment = urlencode({"url": "https://example.com/win", "title": "You won!"})
        popup.goto(f"{server.base_url}/send.html#{fragment}")
        popup.wait_for_selector("#preview:not([hidden])")
        assert popup.inner_text("#preview h2") == f"Send this page to {GRACE}?"
        assert popup.inner_text("#page-title") == "You won!"
        assert popup.inner_text("#page-url") == "https://example.com/win"

        def sent() -> list[dict[str, Any]]:
            messages: list[dict[str, Any]] = client.http.get("/_dev/mail").json()["messages"]
            return [m for m in messages if m["subject"] == "You won!"]

        popup.wait_for_timeout(500)
        assert sent() == []

        popup.keyboard.press("Enter")  # the button has the focus: one key sends
        popup.wait_for_selector("#status:has-text('Sent to your inbox')")
        assert popup.is_hidden("#preview")
        assert client.dev_mail(lambda m: m["subject"] == "You won!")["to"] == [GRACE]
        assert len(sent()) == 1
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log
