"""othermail's page in Debian's chromium: sign up with the mailed code, create, pause, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
