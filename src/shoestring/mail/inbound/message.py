"""InboundMessage: what a handler of received mail gets."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from functools import cached_property

from shoestring.mail import policies


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
        message = email.message_from_bytes(self.raw, policy=policies.DEFAULT)
        assert isinstance(message, EmailMessage)
        return message

    def header(self, name: str) -> str:
        """A header's decoded value on one line ("" if absent); its raw text if it does not parse.

        A sender controls every header: one that decodes to a line break or
        breaks the address grammar must not take the handler down.
        """
        try:
            value = str(self.parsed.get(name, ""))
        except (ValueError, IndexError, TypeError, LookupError):
            raw = email.message_from_bytes(self.raw, policy=email.policy.compat32)
            value = str(raw.get(name, ""))
        # Encoded words can smuggle line breaks in; a header value has none.
        return value.replace("\r", " ").replace("\n", " ")

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def from_(self) -> str:
        return self.header("From")

    @property
    def message_id(self) -> str:
        return self.header("Message-ID").strip()

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
