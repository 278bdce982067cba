"""inline-cms in Debian's chromium: a page on another origin gets its texts, an editor edits in place."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser  # noqa: F401 - the fixture
from tests.e2e.conftest import free_port
from tests.examples.inline_cms import EDITOR, Editor, start_inline_cms
from tests.examples.taptapmail import code_in

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html lang="de-CH">
<head><meta charset="utf-8"><title>Bäckerei</title></head>
<body>
  <h1 data-content="home.title">Welcome</h1>
  <p data-content="home.greeting" data-content-args='{{"name": "Ada"}}'>Hello</p>
  <p data-content="home.hours">Open daily</p>
  <p data-content="home.unknown">Written into the page</p>
  <script src="{cms}/cms.js" data-site="demo" defer></script>
</body>
</html>
"""


def newest_code_mail(editor: Editor, count: int) -> dict[str, Any]:
    """The newest sign-in mail, once `count` of them have arrived."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        codes = [
            m for m in editor.http.get("/_dev/mail").json()["messages"]
            if "sign-in code" in (m["subject"] or "")
        ]  # fmt: skip
        if len(codes) >= count:
            newest = max(codes, key=lambda m: m["created_at"])
            mail: dict[str, Any] = editor.http.get(f"/_dev/mail/{newest['id']}").json()
            return mail
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} sign-in mails arrived")


@pytest.fixture
def customer_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Another origin's static page, served by Python's own HTTP server."""
    root = tmp_path / "customer"
    root.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield root, f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait()


def test_a_page_elsewhere_gets_its_texts_and_an_editor_changes_them(
    browser: Any,  # noqa: F811
    tmp_path: Path,
    customer_site: tuple[Path, str],
) -> None:
    server = start_inline_cms(tmp_path)
    root, origin = customer_site
    (root / "index.html").write_text(PAGE.format(cms=server.base_url))
    editor = Editor(server)
    editor.sign_in()
    editor.draft("en", "home.title", "Welcome")
    editor.draft("en", "home.hours", "Open daily, 7 to 18")
    editor.draft("en", "home.greeting", "Hello, {name}!")
    editor.publish("en")
    editor.draft("de", "home.title", "Willkommen")
    editor.draft("de", "home.greeting", "Grüezi, {name}! <b>not bold</b>")
    editor.publish("de")

    visitor = browser.new_context()
    editing = browser.new_context()
    errors: list[str] = []
    try:
        page = visitor.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(origin + "/")
        page.wait_for_selector("html[data-cms-locale=de]")  # de-CH falls back to de
        assert page.inner_text("h1") == "Willkommen"
        # Placeholders filled from the page; markup in a text stays text.
        assert page.inner_text("[data-content='home.greeting']") == "Grüezi, Ada! <b>not bold</b>"
        assert page.locator("[data-content='home.greeting'] b").count() == 0
        assert page.inner_text("[data-content='home.hours']") == "Open daily, 7 to 18"  # from en
        assert page.inner_text("[data-content='home.unknown']") == "Written into the page"

        # The CMS's own demo page, under its strict Content-Security-Policy.
        demo = visitor.new_page()
        demo.on("pageerror", lambda error: errors.append(str(error)))
        # The policy's refusals show as console errors (a missing favicon does too: not those).
        demo.on("console", lambda m: errors.append(m.text) if "Refused" in m.text else None)
        demo.goto(server.base_url + "/")
        demo.wait_for_selector("html[data-cms-locale=en]")
        assert demo.inner_text("[data-content='home.greeting']") == "Hello, visitor!"

        # The editor opens the same page with #edit and signs in by mail.
        edit = editing.new_page()
        edit.on("pageerror", lambda error: errors.append(str(error)))
        answers = iter([EDITOR, None])

        def answer(dialog: Any) -> None:
            reply = next(answers)
            if reply is None:  # the code prompt: the second code's mail is on its way
                reply = code_in(newest_code_mail(editor, count=2)["text"])
            dialog.accept(reply)

        edit.on("dialog", answer)
        edit.goto(origin + "/#edit")
        edit.click("#inline-cms-toolbar button:has-text('Sign in')")
        edit.wait_for_selector("#inline-cms-status:has-text('Editing demo (de)')")
        title = edit.locator("h1")
        assert title.get_attribute("contenteditable") == "plaintext-only"
        greeting = edit.locator("[data-content='home.greeting']")
        assert greeting.inner_text() == "Grüezi, {name}! <b>not bold</b>"  # the text itself
        title.click()
        edit.keyboard.press("Control+A")
        edit.keyboard.type("Herzlich willkommen")
        edit.click("[data-content='home.unknown']")  # leaving the title saves its draft
        edit.wait_for_selector("h1[data-cms-state=draft]")
        edit.wait_for_selector("#inline-cms-status:has-text('1 unpublished')")

        page.reload()
        page.wait_for_selector("html[data-cms-locale=de]")
        assert page.inner_text("h1") == "Willkommen"  # visitors see only what is published

        edit.click("#inline-cms-toolbar button:has-text('Publish')")
        edit.wait_for_selector("#inline-cms-status:has-text('Published 1 changed texts')")
        page.reload()
        page.wait_for_selector("html[data-cms-locale=de]")
        assert page.inner_text("h1") == "Herzlich willkommen"
        assert errors == []
    finally:
        visitor.close()
        editing.close()
        assert server.terminate() == 0, server.log


def test_the_pages_own_edit_link_starts_editing(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    server = start_inline_cms(tmp_path)
    context = browser.new_context()
    context.set_default_timeout(5000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.base_url + "/")
        page.wait_for_selector("html[data-cms-locale=en]")
        assert page.locator("#inline-cms-toolbar").count() == 0
        page.click("a[href='/#edit']")  # the same page: only its hash changes
        page.wait_for_selector("#inline-cms-status:has-text('Sign in to edit demo (en)')")
        page.evaluate("location.hash = ''; location.hash = '#edit'")  # typed again: one toolbar
        page.wait_for_timeout(200)
        assert page.locator("#inline-cms-toolbar").count() == 1
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log


def test_placeholders_are_filled_from_the_pages_own_args_only(
    browser: Any,  # noqa: F811
    tmp_path: Path,
    customer_site: tuple[Path, str],
) -> None:
    server = start_inline_cms(tmp_path)
    root, origin = customer_site
    (root / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Args</title></head><body>
  <p data-content="home.greeting" data-content-args='{{"name": "Ada"}}'>Hello</p>
  <p data-content="home.plain">Hello</p>
  <p data-content="home.null" data-content-args="null">Hello</p>
  <script src="{server.base_url}/cms.js" data-site="demo" defer></script>
</body></html>
""")  # fmt: skip
    built_ins = "{toString} {__proto__} {constructor} {hasOwnProperty}"
    editor = Editor(server)
    editor.sign_in()
    for key in ("home.greeting", "home.plain", "home.null"):
        editor.draft("en", key, f"Hi {{name}}: {built_ins}")
    editor.publish("en")
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        # The script's own warnings (a missing favicon is a console error too: not those).
        page.on("console", lambda m: errors.append(m.text) if "inline-cms" in m.text else None)
        page.goto(origin + "/")
        page.wait_for_selector("html[data-cms-locale=en]")
        assert page.inner_text("[data-content='home.greeting']") == f"Hi Ada: {built_ins}"
        for key in ("home.plain", "home.null"):
            assert page.inner_text(f"[data-content='{key}']") == f"Hi {{name}}: {built_ins}"
        assert errors == []
    finally:
        context.close()
        assert server.terminate() == 0, server.log
