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

The pure functions in rewrite.py (message in, message out) do the rewriting; `Forwarder`
adds the keys, the reverse-alias table and the outbox. Correspondents'
addresses are stored encrypted (AES-GCM, key from `app.secrets`), and no
address is ever logged.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoestring.db.database import current_transaction
from shoestring.mail.errors import MailError
from shoestring.mail.inbound.rewrite import (
    BOUNCE_PREFIX,
    DONE_DAYS,
    MAX_CONTACTS,
    MAX_HOPS,
    REVERSE_PREFIX,
    Kind,
    _address,
    _mac,
    _one_line,
    addresses,
    bounce_address,
    correspondents,
    delivery_failure,
    domain_of,
    forwarded_copy,
    hidden_message_id,
    hops,
    may_deliver_to,
    read_bounce_address,
    reply_copy,
    revealed_message_id,
    reverse_alias_address,
    reverse_alias_token,
    reverse_alias_token_of,
    sent_by,
)

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.mail.inbound.message import InboundMessage

log = logging.getLogger("shoestring.mail.forward")


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
        if not may_deliver_to(to, self.our_domains) or hops(message.parsed) > MAX_HOPS:
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
        looping = hops(message.parsed) > MAX_HOPS
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
