"""Errors of outbound mail.

MailError                   anything the mail API raises on purpose
├── InvalidMessage          bad address, header injection attempt, missing body
├── TemporaryFailure        the peer said 4xx or could not be reached: retried
└── PermanentFailure        the peer said 5xx: not retried, the reason is kept
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class MailError(ShoestringError):
    """Base class of mail errors."""


class InvalidMessage(MailError, ValueError):
    """The message cannot be sent as given; nothing was queued."""


class TemporaryFailure(MailError):
    """Delivery failed for now (4xx, timeout, connection refused); it will be retried."""


class PermanentFailure(MailError):
    """The receiving server refused the message for good (5xx)."""
