"""Forwarding for aliases, done the way SimpleLogin and addy.io do it.

Plain forwarding (or SRS) keeps the sender's From, so DMARC fails at the
owner's provider whenever the sender's DKIM signature breaks on the way. So
the copy goes out *from our domain*, and replies come back through us:

- `From` and `Reply-To` become a reverse alias, one per (alias, correspondent),
  named after the sender: `"Bob - bob at example.com" <ra_k3x…@ourdomain>`;
  To and Cc addresses get one too, so "reply all" stays private. The
  original From is kept in `X-Original-From`; Message-ID, References and
  In-Reply-To are kept for threading; the body and its MIME structure are
  not touched.
- The envelope sender is a signed, expiring VERP address on our domain
  (`bounce_f_<token>_<expiry>_<signature>@ourdomain`), so bounces come back
  to us, say which alias they are about, and cannot be forged.
- The outbox signs the copy with our DKIM key (`mail.dkim_domain`), so SPF
  (our envelope), DKIM and DMARC all align with our domain.
- A reply from the owner to a reverse alias goes to the correspondent from
  the alias, only if it is provably from the owner (SPF or DKIM of the
  owner's domain, not just the From header), with the owner's address
  scrubbed from the headers and the text.
- Nothing is ever sent to one of our own domains, so mail cannot loop.

The pure functions (message in, message out) do the rewriting; `Forwarder`
adds the keys, the reverse-alias table and the outbox. Correspondents'
addresses are stored encrypted (AES-GCM, key from `app.secrets`), and no
address is ever logged.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, getaddresses
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from shoestring.mail.errors import MailError
from shoestring.tables.table import current_transaction

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.mail.inbound.message import InboundMessage

log = logging.getLogger("shoestring.mail.forward")

REVERSE_PREFIX = "ra_"
BOUNCE_PREFIX = "bounce_"
MAX_HOPS = 30  # Received lines; more means a loop somewhere (postfix's hopcount_limit is 50)
MAX_CONTACTS = 20  # To/Cc addresses given a reverse alias per message; more are left out
HIDDEN = "[address hidden]"
HIDDEN_ID_PREFIX = "sm_"  # Message-IDs of replies, sealed so they do not name the owner's domain
DONE_DAYS = 30  # how long a handled message is remembered, so a retried handler sends it once

Kind = Literal["forward", "reply"]
_KIND_CODE: dict[str, Kind] = {"f": "forward", "r": "reply"}
_PLAIN_ADDRESS = re.compile(
    r"^[^\s@<>()\[\],;:\\\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?$"
)
_MESSAGE_ID = re.compile(r"<([^<>@\s]+)@([^<>@\s]+)>")
_TOKEN = re.compile(r"^[a-z2-7]{16}$")
_BOUNCE = re.compile(r"^bounce_([fr])_([a-z2-7]{16})_([a-z2-7]{1,13})_([a-z2-7]{16})$")

# Headers of the original that are wrong or misleading once we re-send it.
_DROP_WHEN_FORWARDING = {"from", "reply-to", "sender", "return-path", "delivered-to", "bcc",
                         "dkim-signature", "domainkey-signature", "arc-seal",
                         "arc-message-signature", "arc-authentication-results",
                         "authentication-results", "received-spf", "x-original-from"}  # fmt: skip
# The only headers of the owner's reply that reach the correspondent: the
# rest (Received, X-Mailer, X-Originating-IP, the provider's own) can say
# who and where the owner is.
_KEEP_IN_REPLIES = {"subject", "date", "message-id", "in-reply-to", "references", "mime-version",
                    "content-type", "content-transfer-encoding", "content-disposition",
                    "content-language", "thread-topic", "thread-index"}  # fmt: skip


# -- addresses -------------------------------------------------------------------


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def may_deliver_to(address: str, our_domains: Collection[str]) -> bool:
    """Whether forwarding may send to `address`: never to our own domains (a loop)."""
    domain = domain_of(address)
    if "@" not in address or not domain:
        return False
    ours = {d.strip().rstrip(".").lower() for d in our_domains}
    return domain not in ours


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _mac(key: bytes, purpose: str, *parts: str) -> bytes:
    message = "\0".join((purpose, *parts)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def reverse_alias_token(key: bytes, alias: str, correspondent: str) -> str:
    """The same 16 characters for the same alias and correspondent, unguessable without `key`."""
    return _b32(_mac(key, "reverse-alias", alias.lower(), correspondent.lower())[:10])


def reverse_alias_address(token: str, domain: str) -> str:
    return f"{REVERSE_PREFIX}{token}@{domain}"


def reverse_alias_token_of(address: str) -> str | None:
    local = address.rpartition("@")[0].lower()
    token = local.removeprefix(REVERSE_PREFIX)
    return token if local.startswith(REVERSE_PREFIX) and _TOKEN.match(token) else None


@dataclass(frozen=True, slots=True)
class BounceAddress:
    """What a VERP address we made says: which message kind, which reverse alias, until when."""

    kind: Kind
    token: str
    expires: int

    def expired(self, now: float) -> bool:
        return now >= self.expires


def bounce_address(key: bytes, *, domain: str, kind: Kind, token: str, expires: int) -> str:
    """The envelope sender of a forward or a reply: bounces to it name the reverse alias."""
    code = "f" if kind == "forward" else "r"
    expiry = _b32(expires.to_bytes(8, "big").lstrip(b"\0") or b"\0")
    signature = _b32(_mac(key, "bounce", code, token, str(expires))[:10])
    return f"{BOUNCE_PREFIX}{code}_{token}_{expiry}_{signature}@{domain}"


def read_bounce_address(key: bytes, address: str) -> BounceAddress | None:
    """The VERP address's contents if we signed it (expired or not), else None."""
    match = _BOUNCE.match(address.rpartition("@")[0].lower())
    if match is None:
        return None
    code, token, expiry, signature = match.groups()
    padded = expiry.upper() + "=" * (-len(expiry) % 8)
    try:
        expires = int.from_bytes(base64.b32decode(padded), "big")
    except ValueError:
        return None
    expected = _b32(_mac(key, "bounce", code, token, str(expires))[:10])
    if not hmac.compare_digest(expected, signature):
        return None
    return BounceAddress(_KIND_CODE[code], token, expires)


def hidden_message_id(key: bytes, message_id: str, domain: str) -> str:
    """`message_id` encrypted into one of ours: always the same for the same id and key."""
    sealed = AESSIV(_mac(key, "message-id")).encrypt(message_id.encode(), None)
    return f"<{HIDDEN_ID_PREFIX}{_b32(sealed)}@{domain}>"


def revealed_message_id(key: bytes, message_id: str) -> str | None:
    """The id `hidden_message_id` hid in `message_id`, or None if it is not one of those."""
    match = re.fullmatch(rf"<{HIDDEN_ID_PREFIX}([a-z2-7]+)@[^<>@\s]+>", message_id.strip().lower())
    if match is None:
        return None
    data = match[1].upper() + "=" * (-len(match[1]) % 8)
    try:
        return AESSIV(_mac(key, "message-id")).decrypt(base64.b32decode(data), None).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        return None


# -- the forwarded copy ------------------------------------------------------------


def display_name(name: str, address: str) -> str:
    """`Bob - bob at example.com`: who wrote, readable, and never mistaken for an address."""
    local, _, domain = address.rpartition("@")
    shown = f"{local} at {domain}"
    # No '@' and no control characters: a name such as "support@bank.example"
    # must not pass for an address in the owner's mail client.
    name = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    name = name.replace("@", " at ")[:64].strip()
    # A plain hyphen: an ASCII name then needs no RFC 2047 encoding, which
    # some readers (Python's own among them) split wrongly when folded.
    return f"{name} - {shown}" if name and name.lower() != address.lower() else shown


def header_values(message: EmailMessage, name: str) -> list[str]:
    """The values of header `name`, none if Python cannot parse them.

    Crafted headers (a display name that decodes to a line break) make the
    email package raise; such a header is treated as absent, never as a crash.
    """
    try:
        return [str(value) for value in message.get_all(name, [])]
    except (ValueError, TypeError, IndexError):
        return []


def addresses(message: EmailMessage, *names: str) -> list[tuple[str, str]]:
    """(display name, address) in the headers `names`, the malformed left out."""
    values = [value for name in names for value in header_values(message, name)]
    return [
        (name, address)
        for name, address in getaddresses(values)
        if len(address) <= 254 and _PLAIN_ADDRESS.match(address)
    ]


def correspondents(
    message: EmailMessage, our_domains: Collection[str], envelope_sender: str = ""
) -> list[tuple[str, str]]:
    """Who gets a reverse alias in the forwarded copy: the sender, Reply-To, then To and Cc.

    A sender at our own domain gets one too: mail claiming to come from us
    must not go out as ours, signed by our key. Recipients at our domains
    (the alias) stay as they are.
    """
    ours = {d.lower() for d in our_domains}
    found: dict[str, tuple[str, str]] = {}
    others = [p for p in addresses(message, "To", "Cc") if domain_of(p[1]) not in ours]
    for name, address in [
        *_senders(message, envelope_sender),
        *addresses(message, "Reply-To"),
        *others[:MAX_CONTACTS],
    ]:
        found.setdefault(address.lower(), (name, address))
    return list(found.values())


def _senders(message: EmailMessage, envelope_sender: str) -> list[tuple[str, str]]:
    """The From address, or the envelope sender standing in for a missing or unreadable one."""
    return addresses(message, "From")[:1] or (
        [("", envelope_sender)] if "@" in envelope_sender else []
    )


def forwarded_copy(
    original: EmailMessage,
    *,
    reverse_aliases: Mapping[str, str],
    our_domains: Collection[str],
    fallback_from: str,
    envelope_sender: str = "",
    restore_id: Callable[[str], str] = lambda message_id: message_id,
) -> EmailMessage:
    """The copy for the alias's owner: From, Reply-To, To and Cc through reverse aliases.

    `reverse_aliases` maps each correspondent's address (lower case) to its
    reverse alias; a To/Cc address without one (past MAX_CONTACTS) is left
    out. Headers that no longer hold (DKIM and ARC signatures, our
    Authentication-Results, Sender, Return-Path) are dropped; the body is
    kept byte for byte. Without a usable sender, From is `fallback_from`.
    """
    ours = {d.lower() for d in our_domains}
    senders = _senders(original, envelope_sender)
    reply_to = addresses(original, "Reply-To") or senders

    def through_us(pairs: Iterable[tuple[str, str]], *, keep_ours: bool) -> list[Address]:
        rewritten = []
        for name, address in pairs:
            if keep_ours and domain_of(address) in ours:
                rewritten.append(_address(name, address))
            elif (alias := reverse_aliases.get(address.lower())) is not None:
                rewritten.append(_address(display_name(name, address), alias))
        return rewritten

    message = copy.deepcopy(original)
    recipients = {n: through_us(addresses(original, n), keep_ours=True) for n in ("To", "Cc")}
    for name in {n.lower() for n in message} & (_DROP_WHEN_FORWARDING | {"to", "cc"}):
        del message[name]
    sender = through_us(senders, keep_ours=False)
    message["From"] = sender[0] if sender else _address("unknown sender", fallback_from)
    if replies := through_us(reply_to, keep_ours=False):
        message["Reply-To"] = replies
    for name, rewritten in recipients.items():
        if rewritten:
            message[name] = rewritten
    if senders:
        message["X-Original-From"] = _one_line(formataddr(senders[0]))
    for name in ("In-Reply-To", "References"):  # the owner's own ids, as the owner knows them
        values = header_values(message, name)
        restored = [_MESSAGE_ID.sub(lambda m: restore_id(m[0]), value) for value in values]
        if restored != values:
            del message[name]
            message[name] = " ".join(restored)
    return message


def _address(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=_one_line(name), username=local, domain=domain)


def _one_line(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


# -- the reply ----------------------------------------------------------------------


def sent_by(message: InboundMessage, owner: str) -> bool:
    """Whether `message` provably comes from `owner`'s mailbox.

    Its one From address must be `owner`, and our checks must have found
    the owner's domain vouching for it: DMARC passed for that From domain,
    or SPF passed for an envelope sender at that exact domain, or a DKIM
    signature of that exact domain verified. A From header alone is
    trivially forged.
    """
    froms = addresses(message.parsed, "From")
    if [n.lower() for n in message.parsed].count("from") != 1 or len(froms) != 1:
        return False
    if froms[0][1].lower() != owner.lower():
        return False
    domain = domain_of(owner)
    results = message.authentication
    if results.get("dmarc") == "pass" and results.get("from_domain", "").lower() == domain:
        return True
    if (
        results.get("spf") == "pass"
        and results.get("spf_domain", "").lower() == domain
        and domain_of(message.mail_from) == domain
    ):
        return True
    signers = results.get("dkim_domains", "").lower().split()
    return results.get("dkim") == "pass" and domain in signers


def scrub(text: str, address: str, replacement: str) -> str:
    """`text` with every appearance of `address` (any case, `%40`, `&#64;`) replaced.

    If a replacement happens to complete the address with the text around
    it, that is replaced by HIDDEN, which no address can run into.
    """
    local, _, domain = address.rpartition("@")
    at = r"(?:@|%40|&#0*64;|&#x0*40;|&commat;)"
    pattern = re.compile(re.escape(local) + at + re.escape(domain), re.IGNORECASE)
    scrubbed = pattern.sub(lambda _: replacement, text)
    while pattern.search(scrubbed):
        scrubbed = pattern.sub(HIDDEN, scrubbed)
    return scrubbed


def reply_copy(
    original: EmailMessage,
    *,
    alias: str,
    to: Address,
    cc: Iterable[Address] = (),
    owner: str,
    hide_id: Callable[[str], str] = lambda message_id: message_id,
) -> EmailMessage:
    """The owner's reply as the correspondent gets it: from `alias`, without `owner` in it.

    Only the headers in _KEEP_IN_REPLIES are kept; From, To and Cc are set
    here. The owner's address is scrubbed from every header and every text
    part, quoted text and attached messages included. Other attachments go
    as they are. `hide_id` replaces the reply's Message-ID, and the ids in
    In-Reply-To and References made by the same mail system (same part
    after the `@`): those name the owner's provider or domain.
    """
    message = copy.deepcopy(original)
    for name in {n.lower() for n in message} - _KEEP_IN_REPLIES:
        del message[name]
    own = _MESSAGE_ID.search(" ".join(header_values(message, "Message-ID")))
    system = own[2].lower() if own else None
    for name in ("Message-ID", "In-Reply-To", "References") if system else ():
        hidden = [
            _MESSAGE_ID.sub(lambda m: hide_id(m[0]) if m[2].lower() == system else m[0], value)
            for value in header_values(message, name)
        ]
        del message[name]
        for value in hidden[:1]:
            message[name] = value
    message["From"] = Address(addr_spec=alias)
    message["To"] = to
    if cc := list(cc):
        message["Cc"] = cc
    for part in message.walk():
        assert isinstance(part, EmailMessage)
        _scrub_headers(part, owner, alias)
        if part.get_content_maintype() == "text" and not part.is_multipart():
            _scrub_text(part, owner, alias)
    return message


def _scrub_headers(part: EmailMessage, owner: str, replacement: str) -> None:
    names = list(dict.fromkeys(name.lower() for name in part))
    for name in names:
        values = header_values(part, name)
        scrubbed = [_one_line(scrub(value, owner, replacement)) for value in values]
        if values and scrubbed == values:
            continue
        del part[name]  # changed, or unreadable (and so unknowable): dropped
        for value in scrubbed:
            try:
                part[name] = value
            except ValueError:  # a second Subject or Message-ID: once is enough
                break


def _scrub_text(part: EmailMessage, owner: str, replacement: str) -> None:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "latin-1"  # unknown to Python: ASCII text in it still reads as itself
    text = data.decode(charset, "surrogateescape")
    scrubbed = scrub(text, owner, replacement)
    if scrubbed == text:
        return
    # base64 carries the bytes exactly, whatever the charset and line lengths.
    del part["Content-Transfer-Encoding"]
    part.set_payload(base64.encodebytes(scrubbed.encode(charset, "surrogateescape")).decode())
    part["Content-Transfer-Encoding"] = "base64"


# -- bounces ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    permanent: bool
    status: str  # the DSN's status code (`5.1.1`), empty when the report has none


def delivery_failure(message: InboundMessage) -> DeliveryFailure | None:
    """What a message to a VERP address reports, or None if it is no failure report.

    A delivery status notification (RFC 3464) counts when an action is
    `failed`: permanent unless its status is 4.x.x. Delay reports do not
    count, nor do auto-replies (they have a sender; bounces have none). A
    bounce that is not a DSN counts as permanent: it is what old servers send.
    """
    parsed = message.parsed
    if parsed.get_content_type() == "multipart/report":
        for part in parsed.walk():
            if part.get_content_type() in _STATUS_TYPES:
                for fields in _status_fields(part):
                    if fields.get("action", "").lower() == "failed":
                        status = fields.get("status", "").split(" ")[0]
                        return DeliveryFailure(not status.startswith("4"), status)
        return None
    if message.mail_from:
        return None
    return DeliveryFailure(True, "")


_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")


def _status_fields(part: EmailMessage) -> list[dict[str, str]]:
    """The DSN's field blocks (per message, then per recipient) as lower-cased name -> value."""
    payload = part.get_payload()
    if isinstance(payload, list):  # Python parsed the blocks as header-only messages
        text = "\n\n".join(b if isinstance(b, str) else b.as_string() for b in payload)
    else:
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
    texts = re.split(r"\r?\n[ \t]*\r?\n", text)
    return [dict(_field(line) for line in re.split(r"\r?\n", t) if ":" in line) for t in texts]


def _field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


# -- the service ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    """A reverse alias: which alias it belongs to and whom it reaches."""

    token: str
    address: str  # the reverse alias itself, at our domain
    alias: str
    correspondent: str
    name: str


@dataclass(frozen=True, slots=True)
class Bounce:
    """A failure report about mail an alias sent: which alias, and how final."""

    alias: str
    kind: Kind  # "forward": the owner's mailbox refused; "reply": the correspondent's did
    permanent: bool
    status: str


class Forwarder:
    """Forwards mail for the aliases of one domain, takes replies and bounces back.

        forwarder = Forwarder(app, domain="othermail.example")

        @app.on_mail(forwarder.bounces, accept=forwarder.knows)
        async def bounced(message): bounce = await forwarder.bounce(message) ...

        @app.on_mail(forwarder.replies, accept=forwarder.knows)
        async def replied(message):
            contact = await forwarder.contact(message.recipient)
            await forwarder.reply(message, contact=contact, owner=...)

        @app.on_mail("*@othermail.example", accept=alias_exists)
        async def forward(message): await forwarder.forward(message, to=owner)

    Register the bounce and reply handlers first: the first matching
    pattern gets a message. Aliases must not start with `ra_` or `bounce_`.
    The key (HMAC and encryption) is the secret `secret`, made on first use.
    """

    def __init__(
        self,
        app: App,
        *,
        domain: str,
        secret: str = "mail-forwarding",  # noqa: S107 - the secret's name, not its value
        table: str = "forwarding",
        bounce_days: float = 7.0,
    ) -> None:
        self._app = app
        self.domain = domain.strip().rstrip(".").lower()
        self._secret = secret
        self._key: bytes | None = None
        self._bounce_seconds = int(bounce_days * 86400)
        self._contacts = app.table(f"{table}_contacts", indexes=["alias"])
        self._done = app.table(f"{table}_done", ttl="expires")
        self._warned = False
        self.replies = f"{REVERSE_PREFIX}*@{self.domain}"
        self.bounces = f"{BOUNCE_PREFIX}*@{self.domain}"

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self._app.secrets.ensure(self._secret).encode()
        return self._key

    @property
    def our_domains(self) -> set[str]:
        return {self.domain, *(d.lower() for d in self._app.settings.mail.inbound.domains)}

    async def knows(self, address: str) -> bool:
        """For `accept=`: a reverse alias we made, or a VERP address we signed that is still valid."""
        if (token := reverse_alias_token_of(address)) is not None:
            return await self._contacts.get(token) is not None
        verp = read_bounce_address(self.key, address)
        return verp is not None and not verp.expired(time.time())

    async def contact(self, address: str) -> Contact | None:
        """The reverse alias `address` resolved, or None if we never made it (or forgot it)."""
        token = reverse_alias_token_of(address)
        item = None if token is None else await self._contacts.get(token)
        if token is None or item is None:
            return None
        correspondent = json.loads(self._open(token, item["sealed"]))
        return Contact(
            token, reverse_alias_address(token, self.domain), item["alias"],
            correspondent["address"], correspondent["name"],
        )  # fmt: skip

    async def forward(self, message: InboundMessage, *, to: str) -> str | None:
        """Send `message` (received for an alias) on to the alias's owner `to`.

        Returns the outbox id, or None when it must not go: `to` is at one of
        our domains, the message has looped, it is the owner's own reply-all,
        or it was forwarded already (a handler retried after a crash).
        """
        alias = message.recipient.lower()
        if not may_deliver_to(to, self.our_domains) or _hops(message.parsed) > MAX_HOPS:
            log.warning("message %s not forwarded: it would loop", message.id)
            return None
        if any(
            reverse_alias_token_of(r) and domain_of(r) == self.domain for r in message.recipients
        ):
            # Sent to a reverse alias as well: the owner's own "reply all" (only
            # the owner ever sees reverse aliases). The reply goes out; a copy
            # back to the owner would be noise.
            return None
        self._check_signing()
        people = correspondents(message.parsed, self.our_domains, message.mail_from)
        tokens = {a.lower(): reverse_alias_token(self.key, alias, a) for _, a in people}
        forwarded = forwarded_copy(
            message.parsed,
            reverse_aliases={a: reverse_alias_address(t, self.domain) for a, t in tokens.items()},
            our_domains=self.our_domains, fallback_from=alias, envelope_sender=message.mail_from,
            restore_id=lambda mid: revealed_message_id(self.key, mid) or mid,
        )  # fmt: skip
        # Bounces name the sender's reverse alias, and through it the alias.
        sender = people[0][1].lower() if people else ""
        sender_token = tokens.get(sender) or reverse_alias_token(self.key, alias, sender)
        async with self._atomically():
            if not await self._first_time(message, "forward"):
                return None  # a retried handler: at most once per message and alias
            for name, address in people:
                await self._remember(tokens[address.lower()], alias, name, address)
            return await self._app.mail.send_message(
                forwarded, to=[to], envelope_from=self._verp("forward", sender_token)
            )

    async def reply(self, message: InboundMessage, *, contact: Contact, owner: str) -> str | None:
        """Send the owner's reply to `contact` (`await contact(message.recipient)`) from its alias.

        Returns the outbox id, or None when it does not go: the message is
        not provably from `owner` (see `sent_by`; no bounce is sent, the
        sender may be forged), the correspondent is at one of our domains,
        or it was sent already.
        """
        if not sent_by(message, owner):
            log.info(
                "message %s to a reverse alias dropped: not from the alias's owner", message.id
            )
            return None
        looping = _hops(message.parsed) > MAX_HOPS
        if looping or not may_deliver_to(contact.correspondent, self.our_domains):
            log.warning("message %s not sent on: it would loop", message.id)
            return None
        others = []
        for _, address in addresses(message.parsed, "To", "Cc")[:MAX_CONTACTS]:
            other = await self.contact(address) if domain_of(address) == self.domain else None
            if other is not None and other.alias == contact.alias and other.token != contact.token:
                others.append(_address(other.name, other.correspondent))
        outgoing = reply_copy(
            message.parsed, alias=contact.alias, owner=owner,
            to=_address(contact.name, contact.correspondent), cc=others,
            hide_id=lambda mid: hidden_message_id(self.key, mid, self.domain),
        )  # fmt: skip
        async with self._atomically():
            if not await self._first_time(message, "reply"):
                return None
            return await self._app.mail.send_message(
                outgoing, to=[contact.correspondent],
                envelope_from=self._verp("reply", contact.token),
            )  # fmt: skip

    async def bounce(self, message: InboundMessage) -> Bounce | None:
        """What a message to one of our VERP addresses reports, or None (not a failure, or unknown)."""
        verp = read_bounce_address(self.key, message.recipient)
        failure = delivery_failure(message)
        if verp is None or failure is None:
            return None
        item = await self._contacts.get(verp.token)
        if item is None:
            return None
        return Bounce(item["alias"], verp.kind, failure.permanent, failure.status)

    async def forget(self, alias: str) -> int:
        """Delete the reverse aliases (and so the correspondents) of `alias`; how many there were."""
        count = 0
        while True:
            page = await self._contacts.query(alias.lower(), index="alias", limit=100)
            for item in page.items:
                count += await self._contacts.delete(item["id"])
            if not page.cursor:
                return count

    # -- internals -------------------------------------------------------------

    def _verp(self, kind: Kind, token: str) -> str:
        expires = int(time.time()) + self._bounce_seconds
        return bounce_address(self.key, domain=self.domain, kind=kind, token=token, expires=expires)

    def _atomically(self) -> AbstractAsyncContextManager[None]:
        """A transaction: the caller's if one is open (its counters commit with the send)."""
        if current_transaction.get() is not None:
            return contextlib.nullcontext()
        return self._app.tables.transaction()

    async def _first_time(self, message: InboundMessage, what: str) -> bool:
        """Record that `message` was handled; False if it was before (a retried handler)."""
        key = f"{what}:{message.id}:{message.recipient.lower()}"
        if await self._done.get(key) is not None:
            return False
        # Two workers racing past the get: one put fails, its transaction rolls
        # back, its job is retried and finds the mark.
        item = {"id": key, "expires": time.time() + DONE_DAYS * 86400}
        await self._done.put(item, if_not_exists=True)
        return True

    async def _remember(self, token: str, alias: str, name: str, address: str) -> None:
        sealed = self._seal(token, json.dumps({"address": address, "name": _one_line(name)}))
        await self._contacts.put({"id": token, "alias": alias, "sealed": sealed})

    def _cipher(self) -> AESGCM:
        return AESGCM(_mac(self.key, "seal"))

    def _seal(self, token: str, plain: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._cipher().encrypt(nonce, plain.encode(), token.encode())
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def _open(self, token: str, sealed: str) -> str:
        data = base64.urlsafe_b64decode(sealed)
        try:
            return self._cipher().decrypt(data[:12], data[12:], token.encode()).decode()
        except InvalidTag:
            raise ForwardingError(
                f"a reverse alias cannot be read with the key in secret {self._secret!r};"
                " was the secret replaced?"
            ) from None

    def _check_signing(self) -> None:
        settings = self._app.settings.mail
        if self._warned or settings.transport == "dev":
            return
        self._warned = True
        if settings.dkim_domain.lower() != self.domain:
            log.warning(
                "forwarded mail from %s is not DKIM-signed by it (mail.dkim_domain = %r):"
                " providers will treat it as spam; run `shoestring mail dkim init --domain %s`"
                " and set mail.dkim_domain",
                self.domain, settings.dkim_domain, self.domain,
            )  # fmt: skip


class ForwardingError(MailError):
    """Stored forwarding state cannot be used (the key changed)."""


def _hops(message: EmailMessage) -> int:
    return len(message.get_all("Received", []))
