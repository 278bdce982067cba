"""A real SMTP server on loopback (aiosmtpd) that records what it accepts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import free_port
from tests.mail.dns import default_dns, zone  # noqa: F401 - loopback DNS fixtures
from tests.mail.mailroom import mailroom  # noqa: F401 - an app receiving mail


@dataclass
class Sink:
    """Accepts mail, or answers each DATA with the next scripted reply."""

    replies: list[str] = field(default_factory=list)
    # recipient -> the replies its next RCPTs get, in order (then 250)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        scripted = self.rcpt_replies.get(address)
        if scripted:
            return scripted.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.replies:
            reply = self.replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.received.append(
            {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content}
        )
        return "250 OK queued"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def sink() -> Iterator[Sink]:
    handler = Sink()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()
