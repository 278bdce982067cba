"""Outbound mail: a durable outbox, SMTP delivery by jobs, DKIM, DNS records."""

from shoestring.mail.errors import InvalidMessage, MailError, PermanentFailure, TemporaryFailure
from shoestring.mail.message import Attachment
from shoestring.mail.outbox import Mail, OutboxEntry

__all__ = [
    "Attachment",
    "InvalidMessage",
    "Mail",
    "MailError",
    "OutboxEntry",
    "PermanentFailure",
    "TemporaryFailure",
]
