"""`app.mail`: a durable outbox delivered by jobs.

`send` validates and composes the message, stores it in `shoestring_outbox`
and enqueues its delivery in one transaction, then returns the message id: a
crash after that loses nothing. The delivery job skips suppressed addresses,
waits for the rate limits, signs with DKIM when a key is configured, and hands
the message to the transport. A 4xx or a network error is retried with
backoff; a 5xx marks the message failed with the reason. After delivery the
body and recipients are deleted unless `mail.keep_sent` says otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from shoestring.db.database import current_transaction
from shoestring.db.migrations import Migration
from shoestring.errors import ConfigError
from shoestring.jobs import RetryLater, current_attempt, store
from shoestring.mail import dkim, policies
from shoestring.mail import headers as raw_headers
from shoestring.mail.errors import InvalidMessage, PermanentFailure, TemporaryFailure
from shoestring.mail.message import Attachment, compose, parse_address, parse_sender
from shoestring.mail.transports import Transport, open_transport, without_recipients
from shoestring.services import Health

if TYPE_CHECKING:
    from shoestring.app import App

log = logging.getLogger("shoestring.mail")

DELIVERY_JOB = "shoestring.mail.deliver"
SUPPRESSION_KEY = "mail-suppressions"  # the secret keying the suppression list's hashes

MIGRATIONS = [
    Migration(
        "mail",
        1,
        [
            "CREATE TABLE shoestring_outbox (id TEXT PRIMARY KEY, sender TEXT NOT NULL,"
            " recipients TEXT, subject TEXT, message TEXT, state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, transport TEXT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL, sent_at DOUBLE PRECISION)",
            "CREATE INDEX shoestring_outbox_created ON shoestring_outbox (created_at)",
            "CREATE TABLE shoestring_mail_suppressions (address TEXT PRIMARY KEY,"
            " reason TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
        ],
    )
]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: str
    sender: str
    recipients: list[str]
    subject: str | None
    state: str
    attempts: int
    last_error: str | None
    created_at: float
    sent_at: float | None
    message: str | None


SHORT_WAIT = 1.0  # seconds a delivery waits for a rate limit in place; longer, it is postponed


class RateLimiter:
    """At most `limit` events per `window` seconds, per key, in this process."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def wait_time(self, key: str, now: float) -> float:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) < self.limit:
            return 0.0
        return events[0] + self.window - now

    def record(self, key: str, now: float) -> None:
        self._events.setdefault(key, deque()).append(now)


class Mail:
    """The outbox service. Use `await app.mail.send(...)`."""

    name = "mail"

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(MIGRATIONS)
        settings = app.settings.mail
        self._deliver = app.job(
            name=DELIVERY_JOB, retries=settings.retries, backoff=settings.retry_backoff, timeout=120
        )(self._deliver_message)
        self._transport: Transport | None = None
        self._templates: jinja2.Environment | None = None
        self._global_limit = RateLimiter(settings.rate_per_minute, 60.0)
        self._recipient_limit = RateLimiter(settings.rate_per_recipient_per_hour, 3600.0)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            settings = self._app.settings.mail
            self._transport = open_transport(settings.transport, timeout=settings.timeout)
        return self._transport

    # -- sending ---------------------------------------------------------------

    async def send(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        text: str | None = None,
        html: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Iterable[Attachment | tuple[str, bytes]] = (),
        from_: str | None = None,
    ) -> str:
        """Queue a message; return its id once it is committed to the outbox.

        Raises InvalidMessage (nothing queued) for a bad address, a line break
        in a header, or a message without text and html.
        """
        settings = self._app.settings.mail
        raw_text, recipients = compose(
            sender=from_ or settings.sender,
            to=[to] if isinstance(to, str) else list(to),
            subject=subject,
            text=text,
            html=html,
            reply_to=reply_to,
            headers=headers,
            attachments=[a if isinstance(a, Attachment) else Attachment(*a) for a in attachments],
        )
        envelope_from = parse_sender(from_ or settings.sender).addr_spec
        return await self._queue(envelope_from, recipients, subject, raw_text)

    async def send_message(
        self, message: EmailMessage, *, to: list[str], envelope_from: str | None = None
    ) -> str:
        """Queue a whole MIME message as it is (forwarding, resending); return its id.

        `to` are the envelope recipients; `envelope_from` the envelope sender
        (where bounces go), by default the address in the message's From.
        The message is sent as given, plus Date and Message-ID if it has
        none and minus any Bcc; it is DKIM-signed like any other. Raises
        InvalidMessage (nothing queued) for a bad address or a header value
        with a line break in it.
        """
        if not to:
            raise InvalidMessage("a message needs at least one recipient")
        recipients = [parse_address(address, "to").addr_spec for address in to]
        what = "envelope_from" if envelope_from is not None else "From (or pass envelope_from=)"
        try:
            # The email package raises on crafted headers when it parses them.
            if envelope_from is None:
                envelope_from = str(message.get("From", ""))
            subject = " ".join(str(message.get("Subject", "")).split())[:998]
        except (ValueError, TypeError) as exc:
            raise InvalidMessage(f"the message's headers cannot be read: {exc}") from None
        sender = parse_address(envelope_from, what)
        raw_text = wire_text(message, message_id_domain=sender.domain)
        return await self._queue(sender.addr_spec, recipients, subject, raw_text)

    async def _queue(
        self, envelope_from: str, recipients: list[str], subject: str, raw_text: str
    ) -> str:
        """Store the message and enqueue its delivery in one transaction (joining the caller's)."""
        message_id = uuid.uuid4().hex
        row = [
            message_id,
            envelope_from,
            json.dumps(recipients),
            subject,
            raw_text,
            "queued",
            self.transport.name,
            time.time(),
        ]
        insert = (
            "INSERT INTO shoestring_outbox (id, sender, recipients, subject, message, state,"
            " transport, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        delivery = self._app.jobs.new_job(
            self._deliver, (message_id,), idempotency_key=f"mail:{message_id}"
        )
        joined = current_transaction.get()
        if joined is not None:
            await joined.execute(insert, row)
            await store.insert(joined, delivery)
        else:  # one trip to the database for both
            await self._app.db.database.write_batch(
                [(insert, row), (delivery.sql, delivery.params)]
            )
        self._app.jobs.wake()
        return message_id

    async def send_template(self, name: str, /, *, to: str | Sequence[str], **context: Any) -> str:
        """Send `templates/mail/NAME.subject`, `NAME.txt` and/or `NAME.html`, rendered with `context`.

        The HTML part is autoescaped; a variable missing from `context` is an error.
        """
        environment = self._template_environment()
        try:
            subject = environment.get_template(f"{name}.subject").render(context).strip()
        except jinja2.TemplateNotFound:
            raise InvalidMessage(f"no template {name}.subject in {self._template_dir()}") from None
        bodies: dict[str, str | None] = {}
        for kind in ("txt", "html"):
            try:
                bodies[kind] = environment.get_template(f"{name}.{kind}").render(context)
            except jinja2.TemplateNotFound:
                bodies[kind] = None
        return await self.send(to=to, subject=subject, text=bodies["txt"], html=bodies["html"])

    def _template_dir(self) -> Path:
        return Path(self._app.settings.mail.templates)

    def _template_environment(self) -> jinja2.Environment:
        if self._templates is None:
            self._templates = jinja2.Environment(
                loader=jinja2.FileSystemLoader(self._template_dir()),
                autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
                undefined=jinja2.StrictUndefined,
            )
        return self._templates

    # -- suppression -----------------------------------------------------------

    async def suppress(self, address: str, reason: str) -> None:
        """Never send to `address` again (a hard bounce, a complaint, an unsubscribe).

        The list keeps a keyed hash of the address, not the address: a dump
        of the database does not say who bounced, complained or left.
        """
        await self._app.db.database.write(
            "INSERT INTO shoestring_mail_suppressions (address, reason, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (address) DO UPDATE SET reason = excluded.reason",
            [self._suppression_key(address), reason, time.time()],
        )

    async def unsuppress(self, address: str) -> bool:
        return (
            await self._app.db.database.write(
                "DELETE FROM shoestring_mail_suppressions WHERE address = ?",
                [self._suppression_key(address)],
            )
            > 0
        )

    def _suppression_key(self, address: str) -> str:
        normalized = parse_address(address, "address").addr_spec.lower()
        return self._app.secrets.keyed_hash(SUPPRESSION_KEY, normalized)

    async def _hash_plain_suppressions(self) -> None:
        """Replace addresses an earlier version kept in the clear by their keyed hashes.

        Run at every start: a read, and a write only while such rows remain.
        """
        rows = await self._app.db.fetchall(
            "SELECT address, reason, created_at FROM shoestring_mail_suppressions"
            " WHERE address LIKE '%@%'"
        )
        if not rows:
            return
        async with self._app.db.transaction() as tx:  # idempotent: another process may race
            for address, reason, created in rows:
                await tx.execute(
                    "INSERT INTO shoestring_mail_suppressions (address, reason, created_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (address) DO NOTHING",
                    [self._app.secrets.keyed_hash(SUPPRESSION_KEY, address), reason, created],
                )
                await tx.execute(
                    "DELETE FROM shoestring_mail_suppressions WHERE address = ?", [address]
                )

    # -- delivery --------------------------------------------------------------

    async def _deliver_message(self, message_id: str) -> None:
        database = self._app.db.database
        row = await database.fetchone(
            "SELECT sender, recipients, message, state FROM shoestring_outbox WHERE id = ?",
            [message_id],
        )
        if row is None or row[3] != "queued":
            return  # delivered already, or removed: nothing to do twice
        sender, recipients_json, raw_text, _ = row
        recipients: list[str] = json.loads(recipients_json)
        suppressed = await self._suppressed(recipients)
        recipients = [r for r in recipients if r.lower() not in suppressed]
        if not recipients:
            await self._finish(
                message_id, "suppressed", "every recipient is on the suppression list"
            )
            return
        await self._wait_for_rate_limits(recipients)
        raw = raw_text.encode()
        settings = self._app.settings.mail
        if settings.dkim_domain:
            key = dkim.key_path(
                self._app.settings.data_dir, settings.dkim_domain, settings.dkim_selector
            )
            # dkimpy signs in Python (~10 ms a message): in a thread, the loop runs between its steps.
            raw = await asyncio.to_thread(
                dkim.sign,
                raw,
                domain=settings.dkim_domain,
                selector=settings.dkim_selector,
                key=key.read_bytes(),
            )
        try:
            await self.transport.send(sender, recipients, raw)
        except PermanentFailure as exc:
            reason = without_recipients(str(exc), recipients, raw)
            await self._finish(message_id, "failed", reason)
            log.warning("message %s refused for good: %s", message_id, reason)
            return
        except TemporaryFailure as exc:
            reason = without_recipients(str(exc), recipients, raw)
            attempt = current_attempt()
            if attempt is not None and attempt.last:
                # No retry follows: the message has failed, and is forgotten like one.
                reason = f"gave up after {attempt.number} attempts; the last: {reason}"
                await self._finish(message_id, "failed", reason[:1000])
                log.warning("message %s not delivered: %s", message_id, reason)
                return
            await database.write(
                "UPDATE shoestring_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [reason[:1000], message_id],
            )
            raise TemporaryFailure(reason) from None  # the job keeps this reason too
        await self._finish(message_id, "sent", None)
        log.info("message %s sent", message_id, extra={"recipients": len(recipients)})

    async def _suppressed(self, recipients: list[str]) -> set[str]:
        """The recipients (lower case) on the suppression list."""
        keys = {
            self._app.secrets.keyed_hash(SUPPRESSION_KEY, r.lower()): r.lower() for r in recipients
        }
        marks = ", ".join("?" for _ in keys)
        rows = await self._app.db.database.fetchall(
            f"SELECT address FROM shoestring_mail_suppressions WHERE address IN ({marks})",
            list(keys),
        )
        return {keys[row[0]] for row in rows}

    async def _wait_for_rate_limits(self, recipients: list[str]) -> None:
        while True:
            now = time.monotonic()
            wait = max(
                [self._global_limit.wait_time("*", now)]
                + [self._recipient_limit.wait_time(r.lower(), now) for r in recipients]
            )
            if wait <= 0:
                break
            if wait > SHORT_WAIT:
                # Give the worker slot back rather than sleep in it; not a failed attempt.
                raise RetryLater(wait, "mail rate limit reached")
            await asyncio.sleep(wait)
        now = time.monotonic()
        self._global_limit.record("*", now)
        for recipient in recipients:
            self._recipient_limit.record(recipient.lower(), now)

    async def _finish(self, message_id: str, state: str, error: str | None) -> None:
        keep = self._app.settings.mail.keep_sent or self.transport.name == "dev"
        # Delivered or given up: drop what identifies people unless asked to keep it.
        forget = "" if keep else ", message = NULL, recipients = NULL, subject = NULL"
        await self._app.db.database.write(
            "UPDATE shoestring_outbox SET state = ?, last_error = ?, sent_at = ?,"
            f" attempts = attempts + ?{forget} WHERE id = ?",
            [
                state if not (state == "sent" and self.transport.name == "dev") else "captured",
                error,
                time.time(),
                0 if state == "suppressed" else 1,
                message_id,
            ],
        )

    # -- reading ---------------------------------------------------------------

    async def entries(self, limit: int = 50, message_id: str | None = None) -> list[OutboxEntry]:
        where, params = ("WHERE o.id = ?", [message_id]) if message_id else ("", [])
        # A message whose delivery job was cancelled (`shoestring jobs cancel`) shows so.
        rows = await self._app.db.database.fetchall(
            "SELECT o.id, o.sender, o.recipients, o.subject,"
            " CASE WHEN o.state = 'queued' AND j.state = 'cancelled' THEN 'cancelled'"
            " ELSE o.state END, o.attempts, o.last_error, o.created_at, o.sent_at, o.message"
            " FROM shoestring_outbox o LEFT JOIN shoestring_jobs j"
            " ON j.idempotency_key = 'mail:' || o.id"
            f" {where} ORDER BY o.created_at DESC LIMIT ?",
            [*params, limit],
        )
        return [
            OutboxEntry(
                r[0],
                r[1],
                json.loads(r[2]) if r[2] else [],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
            )
            for r in rows
        ]

    # -- service -----------------------------------------------------------------

    async def start(self) -> None:
        self.transport  # noqa: B018 - a bad transport setting fails the start, not the first send
        settings = self._app.settings.mail
        try:
            parse_address(settings.sender, "from")
        except InvalidMessage as exc:
            raise ConfigError(
                "the mail settings", [f"mail.from = {settings.sender!r}: {exc}"]
            ) from None
        if settings.dkim_domain:
            key = dkim.key_path(
                self._app.settings.data_dir, settings.dkim_domain, settings.dkim_selector
            )
            if not key.exists():
                raise InvalidMessage(
                    f"mail.dkim_domain is set but {key} does not exist: run "
                    f"`shoestring mail dkim init --domain {settings.dkim_domain} --selector {settings.dkim_selector}`"
                )
        await self._hash_plain_suppressions()

    async def stop(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(ok=True)


_FIELD_LINE = re.compile(rb"^[!-9;-~]+:")


def wire_text(message: EmailMessage, *, message_id_domain: str) -> str:
    """`message` as the outbox stores it: CRLF lines, Date and Message-ID, no Bcc.

    The caller's message is not changed (nor copied, unless its body must
    be re-encoded: a body in 8-bit bytes that are not UTF-8 becomes base64,
    the same content, since the outbox keeps text). Raises InvalidMessage if
    a header name is not valid or a value would add lines of its own on the
    wire (header injection).
    """
    added = b""
    if "Date" not in message:
        added += _field("Date", formatdate(localtime=False))
    if "Message-ID" not in message:
        added += _field("Message-ID", make_msgid(domain=message_id_domain))
    raw = added + _without_bcc(_serialized(message))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    message = copy.deepcopy(message)
    for part in message.walk():
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if not part.is_multipart() and encoding in ("8bit", "binary"):
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            del part["Content-Transfer-Encoding"]
            part.set_payload(base64.encodebytes(data).decode("ascii"))
            part["Content-Transfer-Encoding"] = "base64"
    # Only headers with raw 8-bit bytes in them are left: Python re-encodes those.
    raw = added + _without_bcc(_serialized(message))
    return raw.decode("utf-8", "replace")


def _field(name: str, value: str) -> bytes:
    return policies.SMTP.fold_binary(name, value)


def _without_bcc(raw: bytes) -> bytes:
    fields, rest = raw_headers.split(raw)
    return b"".join(f for f in fields if raw_headers.field_name(f) != "bcc") + rest


def _serialized(message: EmailMessage) -> bytes:
    try:
        raw = message.as_bytes(policy=policies.SMTP)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"the message cannot be serialized: {exc}") from None
    head = raw.split(b"\r\n\r\n", 1)[0]
    fields = [line for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    # Each header must come out as exactly one field: a value that breaks
    # into a line of its own (`X: a\nBcc: b`) or ends the header early shows
    # as a different count or a line that is not a field.
    if len(fields) != len(message.keys()) or not all(_FIELD_LINE.match(f) for f in fields):
        raise InvalidMessage(
            "a header of the message has a line break in its value or an invalid name;"
            " header values must be one line"
        )
    return raw
