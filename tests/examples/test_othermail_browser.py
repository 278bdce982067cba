"""othermail's page in Debian's chromium: sign up with the mailed code, create, pause, delete."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser import browser  # noqa: F401 - the fixture
from tests.examples.othermail import DOMAIN, Othermail, accepted, refused_at_rcpt

pytestmark = pytest.mark.e2e


def test_sign_up_and_manage_aliases_from_the_page(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    othermail = Othermail(tmp_path)
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # "Delete ...?"
        page.goto(othermail.server.base_url + "/")
        page.fill("#signup-form [name=email]", "grace@owner.example")
        page.click("#signup-form button[type=submit]")
        page.wait_for_selector("#confirm:not([hidden])")
        assert "We mailed a code to grace@owner.example" in page.inner_text("#status")

        page.fill("#confirm-form [name=code]", othermail.code())
        page.click("#confirm-form button[type=submit]")
        page.wait_for_selector("#aliases:not([hidden])")
        assert page.inner_text("#me") == "grace@owner.example"
        assert page.inner_text("#domain") == DOMAIN
        assert page.is_visible("#empty")

        page.fill("#create-form [name=local_part]", "Newsletters")
        page.fill("#create-form [name=note]", "for the shop's newsletter")
        page.select_option("#create-form [name=expires_in]", "604800")
        page.click("#create-form button[type=submit]")
        alias = f"newsletters@{DOMAIN}"
        row = page.wait_for_selector(f"li[data-address='{alias}']")
        assert row.inner_text().startswith(alias)
        assert "for the shop's newsletter" in row.inner_text()
        assert "active · forwarded 0 · blocked 0 · bounced 0 · expires" in row.inner_text()
        assert not page.is_visible("#empty")

        page.fill("#create-form [name=note]", "random one")
        page.click("#create-form button[type=submit]")
        page.wait_for_selector("li.alias:nth-child(2)")
        assert page.locator("li.alias").count() == 2  # the random one is listed too
        assert accepted(othermail.swaks(to=alias))  # and the server takes mail for it

        page.click(f"li[data-address='{alias}'] button.toggle")
        page.wait_for_selector(f"li.paused[data-address='{alias}']")
        assert page.inner_text(f"li[data-address='{alias}'] button.toggle") == "Resume"
        assert refused_at_rcpt(othermail.swaks(to=alias))

        page.click(f"li[data-address='{alias}'] button.delete")
        page.wait_for_selector(f"#status:has-text('{alias} is deleted')")
        assert page.locator(f"li[data-address='{alias}']").count() == 0

        # a reload keeps the browser signed in; signing out forgets it
        page.reload()
        page.wait_for_selector("li.alias")
        assert page.locator("li.alias").count() == 1
        page.click("#signout")
        page.wait_for_selector("#signup:not([hidden])")
        assert page.evaluate("localStorage.getItem('othermail')") is None
        assert errors == []
    finally:
        context.close()
        othermail.stop()


def test_a_confirmation_link_signs_in_only_once_the_user_says_yes(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    othermail = Othermail(tmp_path)
    context, elsewhere = browser.new_context(), browser.new_context()
    context.set_default_timeout(5000)
    elsewhere.set_default_timeout(5000)
    grace, mallory, ada = "grace@owner.example", "mallory@attacker.example", "ada@owner.example"

    def link_for(address: str) -> str:
        assert othermail.call("POST", "/api/signup", email=address).status_code == 202
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for mail in othermail.http.get("/_dev/mail").json()["messages"]:
                if mail["to"] == [address] and (
                    code := re.search(r"code: (\d{6})", mail["subject"])
                ):
                    return f"{othermail.server.base_url}/#confirm={code[1]}&email={quote(address)}"
            time.sleep(0.05)
        raise AssertionError(f"no code for {address}")

    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        stored = "JSON.parse(localStorage.getItem('othermail'))"

        # grace is signed in on this browser.
        page.goto(othermail.server.base_url + "/")
        token = othermail.sign_up(grace)
        page.evaluate(
            "(value) => localStorage.setItem('othermail', JSON.stringify(value))",
            {"token": token, "email": grace, "domain": DOMAIN},
        )
        signed_in = page.evaluate(stored)

        # Mallory signs herself up and gets grace to open a link with her code.
        attack = link_for(mallory)
        page.goto("about:blank")
        page.goto(attack)
        page.wait_for_timeout(500)  # the page had its chance to act on the link by itself
        assert page.evaluate(stored) == signed_in
        page.wait_for_selector("#link:not([hidden])")
        question = page.inner_text("#link")
        assert f"You are signed in as {grace}. Sign in as {mallory} instead?" in question
        assert page.is_hidden("#aliases")
        page.click("#link-decline")
        page.wait_for_selector("#status:has-text('Nothing changed')")
        assert page.inner_text("#me") == grace
        assert page.evaluate(stored) == signed_in

        # Only a yes (the answer has the focus: Enter gives it) switches, and signs grace out.
        page.goto("about:blank")
        page.goto(attack)
        page.wait_for_selector("#link:not([hidden])")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#me:has-text('{mallory}')")
        assert page.evaluate(stored)["email"] == mallory
        assert othermail.call("GET", "/api/aliases", signed_in["token"]).status_code == 401

        # A link for the address already signed in: nothing to ask.
        page.goto("about:blank")
        page.goto(f"{othermail.server.base_url}/#confirm=123456&email={quote(mallory)}")
        page.wait_for_selector(f"#status:has-text('You are already signed in as {mallory}')")
        assert page.is_hidden("#link") and not page.is_hidden("#aliases")

        # The link in one's own mail, in a browser not signed in: one click.
        fresh = elsewhere.new_page()
        fresh.on("pageerror", lambda error: errors.append(str(error)))
        fresh.goto(link_for(ada))
        fresh.wait_for_selector("#link:not([hidden])")
        assert f"Sign in as {ada}?" in fresh.inner_text("#link")
        assert fresh.evaluate(stored) is None and fresh.is_hidden("#signup")
        fresh.click("#link-accept")
        fresh.wait_for_selector("#aliases:not([hidden])")
        assert fresh.evaluate(stored)["email"] == ada
        assert errors == []
    finally:
        context.close()
        elsewhere.close()
        othermail.stop()
