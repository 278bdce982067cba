"""examples/taptapmail over real HTTP: the flow, the refusals, and what the server keeps."""

from __future__ import annotations

import email
import email.policy
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from tests.examples.taptapmail import ADDRESS, Client, code_in, start_taptapmail
from tests.mail.conftest import Sink

pytestmark = pytest.mark.e2e


def test_register_confirm_send_unregister(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        response = client.post("/register", email=ADDRESS, device_name="Ada's phone")
        assert (response.status_code, response.json()) == (202, {"status": "code_sent"})
        mail = client.dev_mail(lambda m: "code" in m["subject"])
        assert mail["to"] == ["ada.lovelace@example.org"]
        assert "Ada's phone" in mail["text"] and "Ada&#39;s phone" in mail["html"]
        code = code_in(mail["text"])
        assert f"#confirm={code}&email=ada.lovelace%40example.org" in mail["text"]

        confirmed = client.post("/confirm", email="ada.lovelace@EXAMPLE.org", code=code)
        assert confirmed.status_code == 200
        client_id = confirmed.json()["client_id"]
        assert uuid.UUID(client_id).version == 4
        # a code works once
        assert client.post("/confirm", email=ADDRESS, code=code).status_code == 400

        sent = client.post("/send", client_id=client_id, email=ADDRESS, text="buy milk\nand eggs")
        assert (sent.status_code, sent.json()) == (202, {"status": "queued"})
        note = client.dev_mail(lambda m: m["subject"] == "buy milk")
        assert note["to"] == ["ada.lovelace@example.org"] and "and eggs" in note["text"]
        link = client.post(
            "/send", client_id=client_id, email=ADDRESS, subject="Read later",
            url="https://example.com/article",
        )  # fmt: skip
        assert link.status_code == 202
        assert client.dev_mail(lambda m: m["subject"] == "Read later")["text"].strip() == (
            "https://example.com/article"
        )

        gone = client.post("/unregister", client_id=client_id, email=ADDRESS)
        assert (gone.status_code, gone.json()) == (200, {"status": "unregistered"})
        after = client.post("/send", client_id=client_id, email=ADDRESS, text="still there?")
        assert (after.status_code, after.json()["error"]["code"]) == (403, "not_registered")
    finally:
        assert server.terminate() == 0, server.log


def test_forged_sends_and_codes_are_refused(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        client_id = client.registered()

        def refused(**body: str) -> str:
            response = client.post("/send", **body)
            assert response.status_code == 403, response.text
            code: str = response.json()["error"]["code"]
            return code

        # another address for a real client id, a made-up id, an unconfirmed address
        assert refused(client_id=client_id, email="eve@example.net", text="x") == "not_registered"
        assert refused(client_id=str(uuid.uuid4()), email=ADDRESS, text="x") == "not_registered"
        assert client.post("/register", email="bob@example.net", device_name="b").status_code == 202
        assert refused(client_id=str(uuid.uuid4()), email="bob@example.net", text="x") == (
            "not_registered"
        )

        # brute force: five wrong guesses void the code, the right one included after
        right = client.code_from_mail(count=1)
        assert client.dev_mail(lambda m: "code" in m["subject"])["to"] == ["bob@example.net"]
        wrong = f"{(int(right) + 1) % 10**6:06d}"
        for _ in range(5):
            response = client.post("/confirm", email="bob@example.net", code=wrong)
            assert response.json()["error"]["code"] == "invalid_code"
        assert client.post("/confirm", email="bob@example.net", code=right).status_code == 400

        # malformed input: a clear error naming the field, nothing else
        bad = client.post("/send", client_id="not-a-uuid", email=ADDRESS, text="x")
        assert bad.status_code == 422 and "client_id" in bad.json()["error"]["message"]
        no_body = client.post("/send", client_id=client_id, email=ADDRESS)
        assert no_body.status_code == 422 and "text, url" in no_body.json()["error"]["message"]
        evil_url = client.post("/send", client_id=client_id, email=ADDRESS, url="javascript:x")
        assert evil_url.status_code == 422
        header = client.post(
            "/send", client_id=client_id, email=ADDRESS, subject="hi\r\nBcc: eve@example.net",
            text="x",
        )  # fmt: skip
        assert header.status_code == 422 and "subject" in header.json()["error"]["message"]
        assert client.http.post("/send", content=b"{").json()["error"]["code"] == "invalid_json"
    finally:
        assert server.terminate() == 0, server.log


def test_codes_expire(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path, TAPTAPMAIL_CODE_TTL="1")
    try:
        client = Client(server)
        assert client.post("/register", email=ADDRESS, device_name="laptop").status_code == 202
        code = client.code_from_mail()
        time.sleep(1.5)
        expired = client.post("/confirm", email=ADDRESS, code=code)
        assert (expired.status_code, expired.json()["error"]["code"]) == (400, "invalid_code")
    finally:
        assert server.terminate() == 0, server.log


def test_registration_reveals_nothing_and_is_rate_limited(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        client.registered()
        known = client.post("/register", email=ADDRESS, device_name="laptop")
        unknown = client.post("/register", email="carol@example.net", device_name="laptop")
        assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())

        # three registrations of one address an hour; then 429 with a time to come back
        assert client.post("/register", email=ADDRESS, device_name="laptop").status_code == 202
        limited = client.post("/register", email=ADDRESS, device_name="laptop")
        assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
        assert 0 < int(limited.headers["retry-after"]) <= 3600
        # another address from the same client is still welcome
        assert client.post("/register", email="dan@example.net", device_name="x").status_code == 202
    finally:
        assert server.terminate() == 0, server.log


def test_the_database_and_logs_hold_no_address_note_or_client_id(
    tmp_path: Path, sink: Sink
) -> None:
    """The full flow with real SMTP delivery, then a dump of everything the server wrote."""
    server = start_taptapmail(tmp_path, SHOESTRING_MAIL__TRANSPORT=sink.url)
    note = "my secret note about the surprise party"
    try:
        client = Client(server)
        assert client.post("/register", email=ADDRESS, device_name="laptop").status_code == 202
        code = code_in(_text_of(_wait_for(sink, 1)[-1]))
        client_id = client.post("/confirm", email=ADDRESS, code=code).json()["client_id"]
        sent = client.post(
            "/send", client_id=client_id, email=ADDRESS, text=note
        )  # the subject too
        assert sent.status_code == 202
        delivered = _wait_for(sink, 2)[-1]
        assert delivered["to"] == ["ada.lovelace@example.org"] and note in _text_of(delivered)
        time.sleep(0.5)  # the outbox forgets the body once delivery is recorded
    finally:
        assert server.terminate() == 0, server.log

    data = server.project / "data"
    with sqlite3.connect(data / "shoestring.db") as database:
        dump = "\n".join(database.iterdump()).lower()
    # Every byte the server left on disk, free pages of the database included:
    # a deleted row must not linger where a copy of the disk would find it.
    on_disk = b"".join(path.read_bytes() for path in data.rglob("*") if path.is_file()).lower()
    logs = server.log.lower()
    for secret in (ADDRESS.lower(), "ada.lovelace", note, "surprise party", client_id):
        assert secret not in dump, f"{secret!r} is in the database"
        assert secret.lower().encode() not in on_disk, f"{secret!r} is in the data directory"
        assert secret not in logs, f"{secret!r} is in the logs"
    assert "/send 202" in server.log  # the logs were written, and they are about requests


def _text_of(received: dict[str, object]) -> str:
    message = email.message_from_bytes(received["data"], policy=email.policy.default)  # type: ignore[arg-type]
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    assert body is not None
    text: str = body.get_content()
    return text


def _wait_for(sink: Sink, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while len(sink.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sink.received) >= count, "the mail did not arrive"
    return sink.received  # type: ignore[return-value]


def test_device_names_are_plain_names(tmp_path: Path) -> None:
    """Anyone can have a confirmation mail sent to anyone: what they write in it stays plain."""
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        for name in ('x". URGENT: account locked, see https://evil.example/fix "',
                     "evil.example", "ada@example.org", "a/b", "x" * 41, " ", "---"):  # fmt: skip
            refused = client.post("/register", email="bob@example.net", device_name=name)
            assert refused.status_code == 422, name
            message = refused.json()["error"]["message"]
            assert "device_name" in message and "letters, digits" in message
        assert client.http.get("/_dev/mail").json()["messages"] == []

        name = "Jörg's phone (work_2)"
        assert client.post("/register", email=ADDRESS, device_name=name).status_code == 202
        mail = client.dev_mail(lambda m: "code" in m["subject"])
        assert f'from "{name}".' in mail["text"]
        assert 'from "Jörg&#39;s phone (work_2)".' in mail["html"]  # escaped, as text
        assert (
            client.post("/register", email=ADDRESS, device_name="Ada\u2019s Ωmega").status_code
            == 202
        )
    finally:
        assert server.terminate() == 0, server.log


def test_a_tagged_address_shares_its_mailbox_limit(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        for address in ("target@example.net", "target+1@example.net", "Target+2@example.net"):
            assert client.post("/register", email=address, device_name="x").status_code == 202
        limited = client.post("/register", email="target+3@example.net", device_name="x")
        assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
        # The mail still goes to the address as typed.
        tagged = client.dev_mail(lambda m: m["to"] == ["target+2@example.net"])
        assert "target%2B2%40example.net" in tagged["text"]
        # One mailbox, one code: its wrong tries count for every +tag, so tags buy no guesses.
        plain = client.dev_mail(lambda m: m["to"] == ["target@example.net"])
        assert code_in(plain["text"]) == code_in(tagged["text"])
        confirmed = client.post(
            "/confirm", email="target+9@example.net", code=code_in(plain["text"])
        )
        assert confirmed.status_code == 200  # the mailbox's reader may use any of its tags
    finally:
        assert server.terminate() == 0, server.log


def test_an_address_it_cannot_mail_is_refused_up_front(tmp_path: Path) -> None:
    server = start_taptapmail(tmp_path)
    try:
        client = Client(server)
        for path, body in (("/register", {"device_name": "x"}), ("/confirm", {"code": "123456"})):
            refused = client.post(path, email="ålice@example.org", **body)
            assert refused.status_code == 422, refused.text
            assert "ASCII before the @" in refused.json()["error"]["message"]
        # A domain in any script is fine: it travels as IDNA.
        idn = client.post("/register", email="alice@exämple.org", device_name="x")
        assert idn.status_code == 202
        assert client.dev_mail(lambda m: "code" in m["subject"])["to"] == [
            "alice@xn--exmple-cua.org"
        ]
    finally:
        assert server.terminate() == 0, server.log
