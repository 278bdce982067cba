"""InboundMessage: what a handler of received mail gets."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from functools import cached_property


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class InboundMessage:
    """One received message, for one of its recipients.

    `raw` is the message as it is spooled: as the client sent it, minus
    headers claiming to be ours, plus our Authentication-Results header.
    """

    id: str
    mail_from: str  # the envelope sender; empty for bounces
    recipient: str  # the recipient this handler call is for
    recipients: tuple[str, ...]
    raw: bytes
    received_at: datetime
    authentication: dict[str, str] = field(
        default_factory=dict
    )  # {"spf": "pass", "dkim": ..., "dmarc": ...}

    @cached_property
    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def subject(self) -> str:
        return str(self.parsed.get("Subject", ""))

    @property
    def from_(self) -> str:
        return str(self.parsed.get("From", ""))

    @property
    def message_id(self) -> str:
        return str(self.parsed.get("Message-ID", "")).strip()

    @property
    def text(self) -> str | None:
        return _body(self.parsed, "plain")

    @property
    def html(self) -> str | None:
        return _body(self.parsed, "html")

    @property
    def attachments(self) -> list[Attachment]:
        found = []
        for part in self.parsed.iter_attachments():
            assert isinstance(part, EmailMessage)
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                found.append(Attachment(part.get_filename(), part.get_content_type(), data))
        return found


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    # Lines end in CRLF on the wire; handlers get Python's "\n".
    return content.replace("\r\n", "\n") if isinstance(content, str) else None
