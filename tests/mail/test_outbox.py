"""Outbound mail against a real SMTP server on loopback, on both database backends."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest

from shoestring import App
from shoestring.config import JobsSettings, MailSettings
from shoestring.jobs import store
from shoestring.mail import InvalidMessage
from shoestring.mail import dkim as our_dkim
from shoestring.mail.message import compose
from shoestring.mail.transports import without_addresses
from tests.backends import make_app, running
from tests.mail.conftest import Sink

pytestmark = pytest.mark.anyio


def mail_app(database_url: str, tmp_path: Path, transport: str, **mail: Any) -> App:
    app = make_app(
        database_url,
        tmp_path,
        jobs=JobsSettings(poll_interval=0.05),
        mail=MailSettings(transport=transport, retry_backoff=0.05, **mail),
    )
    app.mail  # noqa: B018 - as App.running does before starting services
    return app


async def state_of(app: App, message_id: str) -> tuple[Any, ...]:
    row = await app.db.fetchone(
        "SELECT state, attempts, last_error, message, recipients FROM shoestring_outbox WHERE id = ?",
        [message_id],
    )
    assert row is not None
    return tuple(row)


async def until_state(
    app: App, message_id: str, *states: str, within: float = 10
) -> tuple[Any, ...]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await state_of(app, message_id)
        if row[0] in states:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"message stayed {row[0]}")


async def test_delivered_with_a_valid_dkim_signature(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    key = our_dkim.key_path(tmp_path / "data", "example.org", "s1")
    our_dkim.generate_key(key)
    assert key.stat().st_mode & 0o777 == 0o600
    app = mail_app(
        database_url, tmp_path, sink.url, sender="App <noreply@example.org>",
        dkim_domain="example.org", dkim_selector="s1",
    )  # fmt: skip
    async with running(app):
        message_id = await app.mail.send(
            to="Ada <ada@example.net>", subject="Ünïcode ✓", text="plain", html="<p>rich</p>",
            attachments=[("notes.txt", b"attached")],
        )  # fmt: skip
        state, attempts, _, body, recipients = await until_state(app, message_id, "sent", "failed")
    assert (state, attempts) == ("sent", 1)
    assert body is None and recipients is None  # forgotten after delivery
    (received,) = sink.received
    assert received["from"] == "noreply@example.org" and received["to"] == ["ada@example.net"]
    raw = received["data"]
    record = our_dkim.public_key_record(key).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return record

    assert dkimpy.verify(raw, dnsfunc=dns)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Ünïcode ✓"
    assert [part.get_filename() for part in parsed.iter_attachments()] == ["notes.txt"]


async def test_international_names_and_long_lines_arrive_intact(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app = mail_app(database_url, tmp_path, sink.url, sender="Nötes <noreply@example.org>")
    subject = "Grüße aus Köln ✓ " + "und noch mehr Worte " * 8
    text = "Zeile eins\nFrom the start of a line\n" + "ä" * 3000 + "\n"
    async with running(app):
        message_id = await app.mail.send(
            to=["Ádá Lövelace <ada@exämple.org>", "bob@example.net"], subject=subject,
            text=text, html="<p>Grüße</p>", attachments=[("résumé.pdf", b"%PDF-1.4")],
        )  # fmt: skip
        assert (await until_state(app, message_id, "sent", "failed"))[0] == "sent"
    (received,) = sink.received
    # the domain travels in its ASCII form, in the envelope and in the header
    assert received["to"] == ["ada@xn--exmple-cua.org", "bob@example.net"]
    raw = received["data"]
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["From"]) == "Nötes <noreply@example.org>"
    ada = parsed["To"].addresses[0]
    assert (ada.display_name, ada.addr_spec) == ("Ádá Lövelace", "ada@xn--exmple-cua.org")
    assert parsed["Subject"] == subject
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == text
    assert html is not None and html.get_content().strip() == "<p>Grüße</p>"
    (attachment,) = parsed.iter_attachments()
    assert (attachment.get_filename(), attachment.get_content()) == ("résumé.pdf", b"%PDF-1.4")


def test_an_empty_text_is_a_message_with_an_empty_body() -> None:
    raw, recipients = compose(sender="a@example.org", to=["b@example.org"], subject="s", text="")
    parsed = email.message_from_string(raw, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert recipients == ["b@example.org"] and body is not None and body.get_content() == ""


async def test_a_451_is_retried_and_delivered_once(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    sink.replies = ["451 4.3.0 try again later"]
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        message_id = await app.mail.send(to="bob@example.net", subject="hi", text="x")
        state, attempts, error, *_ = await until_state(app, message_id, "sent", "failed")
    assert (state, attempts, error) == ("sent", 2, None) or (state, attempts) == ("sent", 2)
    assert sink.attempts == 2 and len(sink.received) == 1


async def test_a_message_still_deferred_after_the_last_retry_fails_and_is_forgotten(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    sink.replies = ["451 4.3.0 try again later"] * 10
    app = mail_app(database_url, tmp_path, sink.url, retries=2)
    async with running(app):
        message_id = await app.mail.send(to="bob@example.net", subject="hi", text="secret note")
        state, _, error, body, recipients = await until_state(app, message_id, "failed", "sent")
        for _ in range(200):  # the job's own success is recorded just after the outbox's row
            (job,) = await store.records(app.db.database, None, 10)
            if job.state != "running":
                break
            await asyncio.sleep(0.02)
    assert sink.attempts == 3 and sink.received == []  # the first try and two retries
    assert state == "failed"
    assert "gave up after 3 attempts" in error and "451 4.3.0 try again later" in error
    assert body is None and recipients is None  # not kept, as for any message that ended
    assert job.state == "succeeded"  # the outbox gave up; nothing left for the job to retry


async def test_a_550_stops_retries_and_keeps_the_reason(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    sink.replies = ["550 5.1.1 no such user"]
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        message_id = await app.mail.send(to="ghost@example.net", subject="hi", text="x")
        state, attempts, error, *_ = await until_state(app, message_id, "failed", "sent")
        await asyncio.sleep(0.3)
    assert (state, attempts) == ("failed", 1)
    assert error == "550 5.1.1 no such user"
    assert sink.attempts == 1 and sink.received == []


async def test_recipients_deferred_at_rcpt_are_retried_and_the_others_get_it_once(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    sink.rcpt_replies = {
        "bob@example.net": ["451 4.2.0 greylisted, try later"],
        "carol@example.net": ["550 5.1.1 <carol@example.net> no such user"] * 5,
    }
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        message_id = await app.mail.send(
            to=["ada@example.net", "bob@example.net", "carol@example.net"], subject="hi", text="x"
        )
        state, attempts, error, *_ = await until_state(app, message_id, "failed", "sent")
    assert [r["to"] for r in sink.received] == [["ada@example.net"], ["bob@example.net"]]
    assert (state, attempts) == ("failed", 2)
    assert "1 of 3 recipients refused: 550 5.1.1" in error and "no such user" in error
    assert "carol" not in error


async def test_a_reason_echoing_the_recipients_local_part_or_name_keeps_neither(
    database_url: str, tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.replies = ["450 4.2.2 mailbox dave.smith (Dave Smith) over quota"]
    sink.rcpt_replies = {"carol@example.net": ["550 5.1.1 user carol unknown here"]}
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        first = await app.mail.send(
            to="Dave Smith <dave.smith@example.net>", subject="hi", text="x"
        )
        second = await app.mail.send(to="carol@example.net", subject="hi", text="x")
        await until_state(app, second, "failed", "sent")
        await until_state(app, first, "sent", "failed")
        kept = await app.db.fetchall("SELECT last_error FROM shoestring_outbox")
        jobs = await app.db.fetchall("SELECT last_error FROM shoestring_jobs")
    errors = " ".join(str(row[0]) for row in [*kept, *jobs]) + caplog.text
    assert "over quota" in errors and "unknown here" in errors  # the reasons stay useful
    assert not any(word in errors.lower() for word in ("dave", "smith", "carol"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"subject": "hi\r\nBcc: victim@example.com"}, "line break"),
        ({"to": "a@example.com\nBcc: victim@example.com"}, "line break"),
        ({"to": "not an address"}, "not a valid address"),
        ({"to": '"x@other"@example.com'}, "not a valid address"),
        ({"to": "ádá@example.com"}, "non-ASCII characters before the @"),
        ({"headers": {"X-Note": "a\r\nBcc: v@example.com"}}, "line break"),
        ({"headers": {"Bcc": "v@example.com"}}, "cannot be set"),
        ({"text": None}, "text=, html="),
    ],
)
async def test_unsafe_or_invalid_input_is_refused_and_nothing_queued(
    database_url: str, tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    app = mail_app(database_url, tmp_path, "dev")
    arguments: dict[str, Any] = {"to": "ok@example.com", "subject": "s", "text": "t", **fields}
    async with running(app):
        with pytest.raises(InvalidMessage, match=message):
            await app.mail.send(**arguments)
        assert await app.db.fetchall("SELECT id FROM shoestring_outbox") == []


async def test_dev_transport_keeps_messages_and_sends_nothing(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app = mail_app(database_url, tmp_path, "dev")
    async with running(app):
        message_id = await app.mail.send(to="ada@example.net", subject="confirm", text="code 123")
        _, _, _, body, recipients = await until_state(app, message_id, "captured")
        (entry,) = await app.mail.entries()
    assert "code 123" in body and "ada@example.net" in recipients
    assert entry.recipients == ["ada@example.net"] and entry.subject == "confirm"
    assert sink.received == []


async def test_suppressed_addresses_get_nothing(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        await app.mail.suppress("Bounced@Example.net", "hard bounce")
        only = await app.mail.send(to="bounced@example.net", subject="s", text="t")
        mixed = await app.mail.send(
            to=["bounced@example.net", "fine@example.net"], subject="s", text="t"
        )
        assert (await until_state(app, only, "suppressed", "sent"))[0] == "suppressed"
        assert (await until_state(app, mixed, "sent", "failed"))[0] == "sent"
    assert [r["to"] for r in sink.received] == [["fine@example.net"]]


async def test_the_suppression_list_keeps_no_address(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    earlier = mail_app(database_url, tmp_path, sink.url)
    async with running(earlier):
        # As an earlier version kept it: the address itself.
        await earlier.db.database.write(
            "INSERT INTO shoestring_mail_suppressions VALUES ('old@example.net', 'bounce', 1)"
        )
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):  # the next start hashes it
        await app.mail.suppress("Complained@Example.net", "complaint")
        kept = await app.db.fetchall("SELECT address, reason FROM shoestring_mail_suppressions")
        held = [
            await app.mail.send(to=a, subject="s", text="t")
            for a in ("old@example.net", "complained@example.net")
        ]
        states = [(await until_state(app, m, "suppressed", "sent"))[0] for m in held]
        assert await app.mail.unsuppress("complained@example.net")
        again = await app.mail.send(to="complained@example.net", subject="s", text="t")
        assert (await until_state(app, again, "sent", "suppressed"))[0] == "sent"
    assert sorted(reason for _, reason in kept) == ["bounce", "complaint"]
    assert all("@" not in address and "example" not in address for address, _ in kept)
    assert states == ["suppressed", "suppressed"]


async def test_templates_render_with_html_escaped(database_url: str, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "confirm.subject").write_text("Your code, {{ name }}\n")
    (templates / "confirm.txt").write_text("Code: {{ code }}")
    (templates / "confirm.html").write_text("<p>{{ name }}: {{ code }}</p>")
    app = mail_app(database_url, tmp_path, "dev", templates=str(templates))
    async with running(app):
        message_id = await app.mail.send_template(
            "confirm", to="ada@example.net", name="<Ada>", code="123"
        )
        *_, body, _ = await until_state(app, message_id, "captured")
    parsed = email.message_from_string(body, policy=email.policy.default)
    assert parsed["Subject"] == "Your code, <Ada>"
    html = parsed.get_body(("html",)).get_content()
    assert "&lt;Ada&gt;: 123" in html


async def test_recipients_never_reach_the_logs(
    database_url: str, tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink.replies = ["451 busy"]
    app = mail_app(database_url, tmp_path, sink.url)
    async with running(app):
        message_id = await app.mail.send(to="secret.person@example.net", subject="s", text="t")
        await until_state(app, message_id, "sent")
    # Our side only: "mail.log" is the receiving test server's own log.
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert any(r.name == "shoestring.mail" for r in ours)
    assert not [r for r in ours if "secret.person" in r.getMessage() + str(r.__dict__)]


async def test_an_unusable_from_address_stops_the_start_with_a_config_error(
    tmp_path: Path,
) -> None:
    from shoestring import ConfigError

    app = mail_app(f"sqlite:///{tmp_path / 'db'}", tmp_path, "dev", sender="me@box.localhost")
    with pytest.raises(ConfigError, match=r"mail\.from = 'me@box\.localhost'.*special-use"):
        async with running(app):
            pass


async def test_a_recipient_over_the_rate_limit_waits_without_failing(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app = mail_app(database_url, tmp_path, sink.url, rate_per_recipient_per_hour=1, retries=0)
    async with running(app):
        to_ada = [await app.mail.send(to="ada@example.org", subject=s, text=s) for s in "12"]
        other = await app.mail.send(to="bob@example.org", subject="3", text="three")
        await until_state(app, other, "sent")
        deadline = time.monotonic() + 10
        while sink.attempts < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        states = {m: await state_of(app, m) for m in to_ada}
        (held,) = [m for m in to_ada if states[m][0] != "sent"]  # whichever went second
        job = await app.db.fetchone(
            "SELECT state, attempts, run_at FROM shoestring_jobs WHERE idempotency_key = ?",
            [f"mail:{held}"],
        )
    # queued for later (within the hour), not failed, and no attempt spent even with retries=0
    assert states[held][:2] == ("queued", 0)
    assert job is not None and job[:2] == ("queued", 0) and job[2] > time.time() + 60
    assert sorted(m["to"][0] for m in sink.received) == ["ada@example.org", "bob@example.org"]


async def test_over_the_global_rate_the_rest_wait_for_the_next_minute(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app = mail_app(database_url, tmp_path, sink.url, rate_per_minute=2, retries=0)
    async with running(app):
        sent = [
            await app.mail.send(to=f"u{n}@example.org", subject="s", text="t") for n in range(3)
        ]
        deadline = time.monotonic() + 10
        while len(sink.received) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        states = [(await state_of(app, m))[:2] for m in sent]
    assert len(sink.received) == 2
    assert sorted(states) == [("queued", 0), ("sent", 1), ("sent", 1)]


@pytest.mark.parametrize("keep_sent", [False, True])
async def test_keep_sent_keeps_what_a_delivered_message_said(
    database_url: str, tmp_path: Path, sink: Sink, keep_sent: bool
) -> None:
    app = mail_app(database_url, tmp_path, sink.url, keep_sent=keep_sent)
    async with running(app):
        message_id = await app.mail.send(to="ada@example.org", subject="hi", text="the note")
        state, _, _, body, recipients = await until_state(app, message_id, "sent")
    assert state == "sent"
    if keep_sent:
        assert "the note" in body and "ada@example.org" in recipients
    else:
        assert body is None and recipients is None


def test_failure_reasons_lose_addresses_at_address_literals_too() -> None:
    reply = "550 5.1.1 <bob@[192.0.2.7]> and <eve@[IPv6:2001:db8::1]> and <ada@example.net>"
    kept = without_addresses(reply, keep="app@example.org")
    assert kept == "550 5.1.1 <<address>> and <<address>> and <<address>>"
