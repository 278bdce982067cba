"""The dev mailbox at /_dev/mail: what the dev transport kept, for this machine only."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from shoestring import App, Settings
from shoestring.config import MailSettings

LOOPBACK = ("127.0.0.1", 50000)


def _app(tmp_path: Path, transport: str = "dev") -> App:
    settings = Settings(data_dir=tmp_path / "data", mail=MailSettings(transport=transport))
    app = App("devbox", settings=settings)

    @app.route("/welcome", methods=["POST"])
    async def welcome() -> dict[str, str]:
        message_id = await app.mail.send(
            to="ada@example.org", subject="Welcome <b>Ada</b>", text="Hello Ada",
            html="<p>Hello <script>alert(1)</script>Ada</p>",
        )  # fmt: skip
        return {"id": message_id}

    return app


def test_messages_are_listed_and_shown(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path), client=LOOPBACK) as client:
        message_id = client.post("/welcome").json()["id"]
        listing = client.get("/_dev/mail").json()["messages"]
        one = client.get(f"/_dev/mail/{message_id}").json()
        page = client.get("/_dev/mail", headers={"Accept": "text/html"})
        shown = client.get(f"/_dev/mail/{message_id}", headers={"Accept": "text/html"})
        missing = client.get("/_dev/mail/nope")
    assert [(m["id"], m["to"], m["subject"]) for m in listing] == [
        (message_id, ["ada@example.org"], "Welcome <b>Ada</b>")
    ]
    assert one["text"].strip() == "Hello Ada" and "Hello" in one["html"]
    assert one["headers"]["To"] == "ada@example.org"
    assert "Welcome &lt;b&gt;Ada&lt;/b&gt;" in page.text and f"/_dev/mail/{message_id}" in page.text
    # the message's HTML is shown in a sandbox, never run as part of the page
    assert "<iframe sandbox srcdoc=" in shown.text and "<script>" not in shown.text
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "no_such_message")


def test_only_this_machine_may_look(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path), client=("203.0.113.9", 40000)) as client:
        client.post("/welcome")
        assert client.get("/_dev/mail").status_code == 404


def test_there_is_no_mailbox_when_mail_really_leaves(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path, "smtp://127.0.0.1:9"), client=LOOPBACK) as client:
        assert client.get("/_dev/mail").status_code == 404
