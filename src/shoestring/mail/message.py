"""Compose a MIME message from what `app.mail.send` is given, refusing anything unsafe.

Addresses are validated and normalised (email-validator, no DNS lookups);
header values with CR or LF are refused, so no caller input can add headers
or recipients (header injection).
"""

from __future__ import annotations

import email.charset
import email.encoders
import email.policy
import functools
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from typing import Any

from email_validator import EmailNotValidError, validate_email

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
    """One address, optionally with a display name (`Ada <ada@example.org>`), validated.

    The domain comes back in its ASCII form (IDNA), as SMTP and headers carry
    it; an address with non-ASCII characters before the @ is refused, since
    it could only travel by SMTPUTF8.
    """
    _no_newlines(what, value)
    pairs = getaddresses([value])
    if len(pairs) != 1 or not pairs[0][1]:
        raise InvalidMessage(f"{what} must be one email address")
    name, addr = pairs[0]
    try:
        valid = validate_email(addr, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError as exc:
        raise InvalidMessage(f"{what} is not a valid address: {exc}") from None
    if valid.ascii_email is None:
        raise InvalidMessage(
            f"{what} has non-ASCII characters before the @, which shoestring cannot send yet"
        )
    local, _, domain = valid.ascii_email.rpartition("@")
    return Address(display_name=name, username=local, domain=domain.lower())


@functools.lru_cache(maxsize=64)
def parse_sender(value: str) -> Address:
    """`parse_address(value, "from")`, remembered: an app sends from the same few addresses."""
    return parse_address(value, "from")


# The message is built with the email package's classic MIME classes, from
# values checked above: its newer API re-parses every header it is given into
# a token tree, which cost most of the CPU of a send.
WIRE = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)
_UTF8 = email.charset.Charset("utf-8")
_UTF8.body_encoding = email.charset.QP  # readable bodies; long lines wrapped


def _text(name: str, value: str) -> str | Header:
    """A header value as sent: RFC 2047 encoded if it is not ASCII."""
    return value if value.isascii() else Header(value, "utf-8", header_name=name)


def _address(address: Address) -> str:
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


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
) -> tuple[str, list[str]]:
    """The message as sent (CRLF line endings) and its envelope recipients."""
    if not to:
        raise InvalidMessage("a message needs at least one recipient")
    if text is None and html is None:
        raise InvalidMessage("a message needs text=, html= or both")
    from_address = parse_sender(sender)
    recipients = [parse_address(address, "to") for address in to]
    extra: list[tuple[str, str | Header]] = []
    if reply_to:
        extra.append(("Reply-To", _address(parse_address(reply_to, "reply_to"))))
    for name, value in (headers or {}).items():
        if name.lower() in _RESERVED or not name.replace("-", "").isalnum():
            raise InvalidMessage(f"header {name!r} cannot be set here")
        extra.append((name, _text(name, _no_newlines(f"header {name}", value))))
    bodies = ((text, "plain"), (html, "html"))
    parts = [_text_part(body, kind) for body, kind in bodies if body is not None]
    message: Message = parts[0] if len(parts) == 1 else MIMEMultipart("alternative", _subparts=parts, policy=WIRE)  # fmt: skip
    files = list(attachments)
    if files:
        message = MIMEMultipart("mixed", _subparts=[message, *map(_attachment, files)], policy=WIRE)  # fmt: skip
    fields: list[tuple[str, Any]] = [
        ("From", _address(from_address)),
        ("To", ", ".join(map(_address, recipients))),
        ("Subject", _text("Subject", _no_newlines("subject", subject))),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", make_msgid(domain=from_address.domain)),
        *extra,
    ]
    for name, value in fields:
        message[name] = value
    return message.as_string(maxheaderlen=78), [address.addr_spec for address in recipients]


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, policy=WIRE)
    part.set_payload(body, _UTF8)
    return part


def _attachment(attachment: Attachment) -> MIMEBase:
    _no_newlines("attachment filename", attachment.filename)
    content_type = attachment.content_type or (
        mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
    )
    maintype, _, subtype = content_type.partition("/")
    part = MIMEBase(maintype, subtype or "octet-stream", policy=WIRE)
    part.set_payload(attachment.content)
    email.encoders.encode_base64(part)
    name = attachment.filename
    filename = name if name.isascii() else ("utf-8", "", name)  # RFC 2231
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part
