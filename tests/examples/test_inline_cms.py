"""examples/inline-cms over real HTTP: sign in, drafts apart from what is published, refusals."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, run_cli
from tests.examples.inline_cms import EDITOR, Editor, start_inline_cms

pytestmark = pytest.mark.e2e


def test_drafts_stay_unseen_until_published(tmp_path: Path) -> None:
    server = start_inline_cms(tmp_path)
    try:
        editor = Editor(server)
        editor.sign_in()
        public = httpx.Client(base_url=server.base_url)
        locales = public.get("/content/demo/locales.json")
        assert locales.json() == {"default": "en", "locales": ["en", "de"]}
        assert public.get("/content/demo/en.json").status_code == 404  # nothing published yet

        editor.draft("en", "home.title", "Welcome aboard")
        editor.draft("en", "home.greeting", "Hello, {name}!")
        drafts = editor.call("GET", "/en/drafts").json()
        assert drafts == {
            "texts": {"home.title": "Welcome aboard", "home.greeting": "Hello, {name}!"}
        }
        assert public.get("/content/demo/en.json").status_code == 404

        result = editor.publish("en")
        assert (result["published"], result["texts"]) == (2, 2)
        live = public.get("/content/demo/en.json")
        assert live.json() == {"home.title": "Welcome aboard", "home.greeting": "Hello, {name}!"}
        assert live.headers["access-control-allow-origin"] == "*"  # any page may fetch it
        assert live.headers["cache-control"] == "no-cache"  # revalidated: a publish shows at once
        again = public.get("/content/demo/en.json", headers={"If-None-Match": live.headers["etag"]})
        assert again.status_code == 304
        assert editor.call("GET", "/en/drafts").json() == {"texts": {}}

        editor.draft("en", "home.title", "Welcome back")  # a second draft of a published text
        assert public.get("/content/demo/en.json").json()["home.title"] == "Welcome aboard"
        assert editor.publish("en")["texts"] == 2
        assert public.get("/content/demo/en.json").json() == {
            "home.title": "Welcome back", "home.greeting": "Hello, {name}!",
        }  # fmt: skip
        assert public.get("/content/demo/en.json").headers["etag"] != live.headers["etag"]
    finally:
        assert server.terminate() == 0, server.log
    files = sorted(p.name for p in (server.project / "data" / "published" / "demo").iterdir())
    assert files == ["en.json", "locales.json"]  # no temporary file left behind
    assert EDITOR.lower() not in server.log.lower()  # addresses stay out of the logs


def test_only_editors_of_a_site_change_it(tmp_path: Path) -> None:
    server = start_inline_cms(tmp_path)
    try:
        editor = Editor(server)
        # Anyone may ask for a code, and gets the same answer, but only editors get mail.
        stranger = editor.post("/api/signin", site="demo", email="mallory@example.com")
        assert (stranger.status_code, stranger.json()) == (202, {"status": "code_sent"})
        editor.sign_in()
        assert [m["to"] for m in editor.http.get("/_dev/mail").json()["messages"]] == [
            ["editor@example.org"]
        ]
        assert (
            editor.post("/api/confirm", site="demo", email=EDITOR, code="000000").status_code == 400
        )

        anonymous = Editor(server)
        for method, path in [("GET", "/en/drafts"), ("PUT", "/en/drafts/home.title"),
                             ("POST", "/en/publish")]:  # fmt: skip
            refused = anonymous.call(method, path, text="defaced")
            assert (refused.status_code, refused.json()["error"]["code"]) == (401, "signed_out")
        # A token of one site is no key to another.
        elsewhere = Editor(server, site="other")
        elsewhere.token = editor.token
        assert elsewhere.call("PUT", "/en/drafts/home.title", text="x").status_code == 401

        assert editor.call("PUT", "/fr/drafts/home.title", text="x").status_code == 404
        assert editor.call("PUT", "/en/drafts/home..title", text="x").status_code == 422
        assert editor.call("PUT", "/en/drafts/" + "k" * 65, text="x").status_code == 422
        assert editor.call("PUT", "/en/drafts/home.title", text="x" * 10_001).status_code == 422
        assert editor.call("GET", "/en/drafts").json() == {"texts": {}}  # nothing kept

        assert (
            editor.http.post(
                "/api/signout", headers={"Authorization": f"Bearer {editor.token}"}
            ).status_code
            == 200
        )
        assert editor.call("GET", "/en/drafts").status_code == 401
    finally:
        assert server.terminate() == 0, server.log


def test_published_texts_are_served_from_disk_with_the_app_down(
    tmp_path: Path,
    caddy: callable,  # type: ignore[valid-type]
) -> None:
    server = start_inline_cms(tmp_path)
    try:
        editor = Editor(server)
        editor.sign_in()
        editor.draft("de", "home.title", "Willkommen")
        editor.publish("de")
        block = run_cli(
            server.project, "sites", "caddyfile", "--upstream", f"127.0.0.1:{server.port}"
        )
        assert block.returncode == 0, block.stderr
    finally:
        assert server.terminate() == 0, server.log
    edge = caddy(block.stdout)  # the production edge, with the editing API down
    assert httpx.get(edge + "/api/sites/demo/de/drafts").status_code == 502
    texts = httpx.get(edge + "/content/demo/de.json")
    assert texts.status_code == 200 and texts.headers["server"] == "Caddy"
    assert json.loads(texts.text) == {"home.title": "Willkommen"}
    assert texts.headers["access-control-allow-origin"] == "*"
    assert texts.headers["cache-control"] == "no-cache"
    script = httpx.get(edge + "/cms.js")
    assert script.status_code == 200 and "data-content" in script.text


def test_an_editor_taken_off_the_list_is_signed_out(tmp_path: Path) -> None:
    server = start_inline_cms(tmp_path)
    try:
        editor = Editor(server)
        editor.sign_in()
        assert editor.call("GET", "/en/drafts").status_code == 200
    finally:
        assert server.terminate() == 0, server.log
    sites = server.project / "sites.toml"
    sites.write_text(sites.read_text().replace('"editor@example.org"', '"new@example.org"'))
    again = Server(server.project)
    again.wait_ready("/_ready")
    try:
        editor.http = httpx.Client(base_url=again.base_url)
        refused = editor.call("GET", "/en/drafts")  # the same token, still unexpired
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "signed_out")
    finally:
        assert again.terminate() == 0, again.log


def test_sign_in_answers_editors_and_strangers_alike(tmp_path: Path) -> None:
    """The same limits and answers for any address; only an editor's job sends mail."""
    server = start_inline_cms(tmp_path)
    stranger = "mallory@example.com"
    try:
        client = Editor(server)

        def answers(email: str) -> list[tuple[int, str]]:
            replies = [client.post("/api/signin", site="demo", email=email) for _ in range(7)]
            return [(r.status_code, r.json().get("error", {}).get("code", "")) for r in replies]

        as_editor, as_stranger = answers(EDITOR), answers(stranger)
        assert as_editor == as_stranger == [(202, "")] * 5 + [(429, "rate_limited")] * 2
        # A +tag is the same mailbox, and the same limit, editor or not.
        for tagged in ("editor+1@example.org", "mallory+1@example.com"):
            assert client.post("/api/signin", site="demo", email=tagged).status_code == 429

        mail = client.dev_mail(lambda m: "sign-in code" in (m["subject"] or ""))
        assert mail["to"] == ["editor@example.org"]
        with sqlite3.connect(server.project / "data" / "shoestring.db") as database:
            jobs = _signin_jobs(database)
            assert len(jobs) == 10  # one per sign-in let through, whoever asked
            for args in jobs:
                assert "@" not in args and "mallory" not in args and "editor" not in args
        recipients = {tuple(m["to"]) for m in client.http.get("/_dev/mail").json()["messages"]}
        assert recipients == {("editor@example.org",)}  # all jobs ran: none mailed the stranger

        foreign = client.post("/api/signin", site="demo", email="ålice@example.org")
        assert foreign.status_code == 422 and "ASCII" in foreign.json()["error"]["message"]
    finally:
        assert server.terminate() == 0, server.log


def _signin_jobs(database: sqlite3.Connection) -> list[str]:
    """The arguments of every sign-in job, once all of them have run."""
    query = "SELECT state, args FROM shoestring_jobs WHERE name LIKE '%signin%'"
    deadline = time.monotonic() + 10
    while (rows := database.execute(query).fetchall()) and time.monotonic() < deadline:
        if all(state == "succeeded" for state, _ in rows):
            break
        time.sleep(0.05)
    assert rows and all(state == "succeeded" for state, _ in rows), rows
    return [str(args) for _, args in rows]
