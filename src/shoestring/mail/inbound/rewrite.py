"""The rewriting behind forwarding: pure functions, message in, message out.

Reverse-alias and VERP addresses (signed, expiring), the forwarded copy, the
owner's reply with the owner's address scrubbed, delivery-failure reports,
and the loop rules. `forward.py` adds the keys, the tables and the outbox;
its docstring says why forwarding works this way.
"""

from __future__ import annotations

import base64
import codecs
import copy
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

if TYPE_CHECKING:
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
# Auto-Submitted (RFC 3834 §5), Precedence and List-Id are what tell the
# correspondent's auto-responder not to answer an auto-reply: without them two
# responders answer each other through the forwarder forever.
_KEEP_IN_REPLIES = {"subject", "date", "message-id", "in-reply-to", "references", "mime-version",
                    "content-type", "content-transfer-encoding", "content-disposition",
                    "content-language", "thread-topic", "thread-index", "auto-submitted",
                    "precedence", "list-id"}  # fmt: skip


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
    here, and as many Received lines as the original had, of ours. The owner's address is scrubbed from every header and every text
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
    # The owner's Received lines would say where the owner is, but their number is
    # what every server's hop limit counts: as many lines of ours, naming nothing
    # but our domain, so a loop through the forwarder still ends (RFC 5321 §6.3).
    trace = f"by {domain_of(alias)} with shoestring-forwarder; {formatdate()}"
    for _ in range(hops(original)):
        message["Received"] = trace
    for part in message.walk():
        assert isinstance(part, EmailMessage)
        _scrub_headers(part, owner, alias)
        if part.get_content_maintype() == "text" and not part.is_multipart():
            _scrub_text(part, owner, alias)
    if "MIME-Version" not in message and any(
        "Content-Transfer-Encoding" in p for p in message.walk()
    ):
        message["MIME-Version"] = "1.0"  # readers decode base64 only in a MIME message
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


def hops(message: EmailMessage) -> int:
    return len(message.get_all("Received", []))
