"""An app receiving mail on a real SMTP port, and clients that speak to it."""

from __future__ import annotations

import asyncio
import contextlib
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
from tests.mail.dns import LoopbackDNS

DOMAIN = "in.example"


class Mailroom:
    """An app receiving mail for DOMAIN, recording what its handlers get."""

    def __init__(self, app: App, port: int) -> None:
        self.app = app
        self.port = port
        self.received: list[InboundMessage] = []
        self.full: set[str] = set()
        self.failures_left = 0
        self.failing: set[str] = set()  # recipients whose handler always raises

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
async def mailroom(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> AsyncIterator[Mailroom]:
    """Receiving for DOMAIN, with DNS answered by `default_dns` (empty unless a test fills it)."""
    async with open_mailroom(database_url, tmp_path) as room:
        yield room


@contextlib.asynccontextmanager
async def open_mailroom(
    database_url: str, tmp_path: Path, screen: Any = None, pattern: str = f"*@{DOMAIN}",
    retries: int = 8, **inbound_settings: Any,
) -> AsyncIterator[Mailroom]:  # fmt: skip
    port = free_port()
    inbound = InboundSettings(
        enabled=True,
        port=port,
        domains=[DOMAIN],
        hostname="mx.in.example",
        max_message_size=64 * 1024,
        max_recipients=3,
        max_connections_per_ip=3,
        max_bad_commands=4,
        **inbound_settings,
    )
    app = make_app(
        database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05),
        mail=MailSettings(inbound=inbound, retries=retries, retry_backoff=0.05),
    )  # fmt: skip
    room = Mailroom(app, port)

    async def exists(address: str) -> bool:
        if address in room.full:
            raise MailboxFull
        if address.startswith("broken"):
            raise RuntimeError("the alias table is unreachable")
        return not address.startswith("gone")

    @app.on_mail(pattern, accept=exists, screen=screen)
    async def handle(message: InboundMessage) -> None:
        if message.recipient in room.failing:
            raise RuntimeError("this mailbox's storage is gone")
        if room.failures_left:
            room.failures_left -= 1
            raise RuntimeError("the handler's storage is down")
        room.received.append(message)

    async with running(app):
        yield room


def converse(
    port: int, commands: list[str], *, mail_from: str = "MAIL FROM:<s@elsewhere.example>",
    data: str | None = None, helo: str = "EHLO client.example",
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
        for command in [helo, mail_from, *commands]:
            sock.sendall(command.encode() + b"\r\n")
            replies.append(reply())
            if replies[-1].startswith("421"):
                return replies
        if data is not None:
            sock.sendall(data.encode())
            replies.append(reply())
    return replies
