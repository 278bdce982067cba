"""Compose a MIME message from what `app.mail.send` is given, refusing anything unsafe.

Addresses are validated and normalised (email-validator, no DNS lookups);
header values with CR or LF are refused, so no caller input can add headers
or recipients (header injection).
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid

from email_validator import EmailNotValidError, validate_email

from shoestring.mail import policies
from shoestring.mail.errors import InvalidMessage

# Headers shoestring sets itself; a caller may not override them through `headers=`.
_RESERVED = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "mime-version",
             "content-type", "content-transfer-encoding", "dkim-signature"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str | None = None


def _no_newlines(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise InvalidMessage(f"{name} contains a line break; header values must be one line")
    return value


def parse_address(value: str, what: str) -> Address:
    """One address, optionally with a display name (`Ada <ada@example.org>`), validated."""
    _no_newlines(what, value)
    pairs = getaddresses([value])
    if len(pairs) != 1 or not pairs[0][1]:
        raise InvalidMessage(f"{what} must be one email address")
    name, addr = pairs[0]
    try:
        valid = validate_email(addr, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError as exc:
        raise InvalidMessage(f"{what} is not a valid address: {exc}") from None
    local, _, domain = valid.normalized.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


@functools.lru_cache(maxsize=64)
def parse_sender(value: str) -> Address:
    """`parse_address(value, "from")`, remembered: an app sends from the same few addresses."""
    return parse_address(value, "from")


def compose(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str | None = None,
    html: str | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Iterable[Attachment] = (),
) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients (bare addresses)."""
    if not to:
        raise InvalidMessage("a message needs at least one recipient")
    if text is None and html is None:
        raise InvalidMessage("a message needs text=, html= or both")
    from_address = parse_sender(sender)
    recipients = [parse_address(address, "to") for address in to]
    message = EmailMessage(policy=policies.SMTP)
    message["From"] = from_address
    message["To"] = recipients
    message["Subject"] = _no_newlines("subject", subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=from_address.domain)
    if reply_to:
        message["Reply-To"] = parse_address(reply_to, "reply_to")
    for name, value in (headers or {}).items():
        if name.lower() in _RESERVED or not name.replace("-", "").isalnum():
            raise InvalidMessage(f"header {name!r} cannot be set here")
        message[name] = _no_newlines(f"header {name}", value)
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    for attachment in attachments:
        _no_newlines("attachment filename", attachment.filename)
        content_type = attachment.content_type or (
            mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
        )
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message, [address.addr_spec for address in recipients]
