"""The receiving SMTP server, spoken to by smtplib and raw sockets: relay rules, limits, spool."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from shoestring import App
from shoestring.config import InboundSettings, JobsSettings, MailSettings
from shoestring.mail.inbound import InboundMessage, MailboxFull
from tests.backends import make_app, running
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.anyio

DOMAIN = "in.example"


class Mailroom:
    """An app receiving mail for DOMAIN, recording what its handlers get."""

    def __init__(self, app: App, port: int) -> None:
        self.app = app
        self.port = port
        self.received: list[InboundMessage] = []
        self.full: set[str] = set()
        self.failures_left = 0

    async def send(self, *recipients: str, message: EmailMessage | None = None) -> dict[str, Any]:
        message = message or note()
        return await asyncio.to_thread(self._send, list(recipients), message)

    def _send(self, recipients: list[str], message: EmailMessage) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            refused: dict[str, Any] = client.send_message(
                message, "sender@elsewhere.example", recipients
            )
            return refused

    async def spooled(self) -> list[tuple[Any, ...]]:
        return await self.app.db.fetchall("SELECT id, state, raw IS NULL FROM shoestring_inbound")

    async def until_received(self, count: int) -> None:
        for _ in range(200):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.received)} messages handled, expected {count}")


def note(subject: str = "hello", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Sender <sender@elsewhere.example>"
    message["To"] = f"notes@{DOMAIN}"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("the body\n")
    return message


@pytest.fixture
async def mailroom(database_url: str, tmp_path: Path) -> AsyncIterator[Mailroom]:
    port = free_port()
    inbound = InboundSettings(
        enabled=True, port=port, domains=[DOMAIN], hostname="mx.in.example",
        max_message_size=64 * 1024, max_recipients=3, max_connections_per_ip=3, max_bad_commands=4,
    )  # fmt: skip
    app = make_app(
        database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05),
        mail=MailSettings(inbound=inbound, retry_backoff=0.05),
    )  # fmt: skip
    room = Mailroom(app, port)

    async def exists(address: str) -> bool:
        if address in room.full:
            raise MailboxFull
        return not address.startswith("gone")

    @app.on_mail(f"*@{DOMAIN}", accept=exists)
    async def handle(message: InboundMessage) -> None:
        if room.failures_left:
            room.failures_left -= 1
            raise RuntimeError("the handler's storage is down")
        room.received.append(message)

    async with running(app):
        yield room


async def test_a_message_is_spooled_then_handled_and_forgotten(mailroom: Mailroom) -> None:
    message = note("groceries")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="list.pdf")
    assert await mailroom.send(f"notes@{DOMAIN}", "Other@IN.example", message=message) == {}
    await mailroom.until_received(2)
    first = mailroom.received[0]
    assert sorted(m.recipient for m in mailroom.received) == [f"Other@{DOMAIN}", f"notes@{DOMAIN}"]
    assert first.mail_from == "sender@elsewhere.example"
    assert first.subject == "groceries" and first.text == "the body\n"
    assert [(a.filename, a.content_type, a.data) for a in first.attachments] == [
        ("list.pdf", "application/pdf", b"%PDF-1.4")
    ]
    await asyncio.sleep(0.1)
    assert [row[1:] for row in await mailroom.spooled()] == [("processed", True)]  # body deleted


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("user@elsewhere.example", 550),  # not our domain: never relay
        ("user%elsewhere.example@in.example", 553),  # percent hack
        ("elsewhere.example!user@in.example", 553),  # bang path
        ('"user@elsewhere.example"@in.example', 553),  # quoted local part
        ("user@[127.0.0.1]", 553),  # address literal
        ("gone@in.example", 550),  # our domain, no such mailbox
        ("user@in.example.elsewhere.example", 550),  # a domain that merely starts like ours
    ],
)
async def test_relay_tricks_and_unknown_mailboxes_are_refused_at_rcpt(
    mailroom: Mailroom, address: str, code: int
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await mailroom.send(address)
    assert refused.value.recipients[address][0] == code
    assert await mailroom.spooled() == []


async def test_source_routes_are_refused(mailroom: Mailroom) -> None:
    replies = await asyncio.to_thread(
        _converse, mailroom.port, [f"RCPT TO:<@{DOMAIN}:user@elsewhere.example>"]
    )
    assert replies[-1].startswith("553 5.1.3")


async def test_full_mailboxes_and_too_many_recipients_are_deferred(mailroom: Mailroom) -> None:
    mailroom.full.add(f"full@{DOMAIN}")
    refused = await mailroom.send(f"full@{DOMAIN}", f"a@{DOMAIN}")
    assert refused == {f"full@{DOMAIN}": (452, b"4.2.2 Mailbox full; try again later")}
    replies = await asyncio.to_thread(
        _converse, mailroom.port, [f"RCPT TO:<r{n}@{DOMAIN}>" for n in range(4)]
    )
    assert [r[:3] for r in replies[-4:]] == ["250", "250", "250", "452"]


async def test_oversized_messages_are_refused_before_they_are_stored(mailroom: Mailroom) -> None:
    declared = await asyncio.to_thread(
        _converse, mailroom.port, [], mail_from="MAIL FROM:<s@elsewhere.example> SIZE=999999"
    )
    assert declared[-1].startswith("552")
    # a client that does not declare the size is stopped at DATA
    body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 100 + ".\r\n"
    undeclared = await asyncio.to_thread(
        _converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"], data=body
    )
    assert undeclared[-1].startswith("552")
    assert await mailroom.spooled() == []


async def test_smuggled_end_of_data_is_refused(mailroom: Mailroom) -> None:
    smuggled = (
        "Subject: hi\r\n\r\nfirst\n.\nMAIL FROM:<evil@elsewhere.example>\r\n"
        "RCPT TO:<victim@elsewhere.example>\r\nDATA\r\nsmuggled\r\n.\r\n"
    )
    replies = await asyncio.to_thread(
        _converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"], data=smuggled
    )
    assert replies[-1].startswith("550 5.6.0")
    assert await mailroom.spooled() == []


async def test_headers_claiming_to_be_ours_are_removed(mailroom: Mailroom) -> None:
    message = note(X_Shoestring_Verified="yes")
    message["Authentication-Results"] = "mx.in.example; dmarc=pass header.from=bank.example"
    message["Authentication-Results"] = "mx.other.example; spf=fail"
    await mailroom.send(f"notes@{DOMAIN}", message=message)
    await mailroom.until_received(1)
    kept = mailroom.received[0].parsed
    assert kept["X-Shoestring-Verified"] is None
    assert kept.get_all("Authentication-Results") == ["mx.other.example; spf=fail"]
    assert kept["Subject"] == "hello"


async def test_a_resent_message_is_handled_once(mailroom: Mailroom) -> None:
    message = note(Message_ID="<once@elsewhere.example>")
    await mailroom.send(f"notes@{DOMAIN}", message=message)
    await mailroom.send(f"notes@{DOMAIN}", message=message)  # the client never saw our 250
    await mailroom.until_received(1)
    await asyncio.sleep(0.3)
    assert len(mailroom.received) == 1


async def test_a_failing_handler_is_retried(mailroom: Mailroom) -> None:
    mailroom.failures_left = 1
    await mailroom.send(f"notes@{DOMAIN}")
    await mailroom.until_received(1)
    assert mailroom.failures_left == 0


async def test_connections_and_errors_are_limited(mailroom: Mailroom) -> None:
    def open_connections() -> list[str]:
        sockets = [socket.create_connection(("127.0.0.1", mailroom.port)) for _ in range(4)]
        try:
            return [s.recv(200).decode() for s in sockets]
        finally:
            for s in sockets:
                s.close()

    greetings = await asyncio.to_thread(open_connections)
    assert [g[:3] for g in greetings] == ["220", "220", "220", "421"]
    replies = await asyncio.to_thread(_converse, mailroom.port, ["BOGUS"] * 5)
    assert any(r.startswith("421 4.7.0 Too many errors") for r in replies)


def _converse(
    port: int, commands: list[str], *, mail_from: str = "MAIL FROM:<s@elsewhere.example>",
    data: str | None = None,
) -> list[str]:  # fmt: skip
    """Speak SMTP line by line; every reply, in order."""
    replies: list[str] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            lines = []
            while True:
                line = reader.readline().decode()
                lines.append(line.strip())
                if len(line) < 4 or line[3] != "-":
                    return "\n".join(lines)

        replies.append(reply())
        for command in ["EHLO client.example", mail_from, *commands]:
            sock.sendall(command.encode() + b"\r\n")
            replies.append(reply())
            if replies[-1].startswith("421"):
                return replies
        if data is not None:
            sock.sendall(data.encode())
            replies.append(reply())
    return replies
