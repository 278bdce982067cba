"""`app.on_mail`: handlers for received mail, and the SMTP server that feeds them.

    @app.on_mail("*@notes.example")
    async def save(message: InboundMessage) -> None: ...

Patterns are shell-style, matched case-insensitively against the recipient
(`alias-*@example.org`); the first that matches gets the message. A handler
runs as a durable job, once per recipient, after the message is spooled; if
it raises, it is retried with backoff (handlers must be idempotent: a crash
after a handler's work and before its success is recorded runs it again).
`accept=` decides at RCPT time whether an address exists; without it, every
address matching the pattern does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, TypeVar

from shoestring.errors import ConfigError
from shoestring.jobs import current_attempt
from shoestring.limits import RateLimited, network
from shoestring.mail import headers
from shoestring.mail.inbound import server, spool
from shoestring.mail.inbound.addresses import Refused, our_recipient
from shoestring.mail.inbound.auth import Unreadable, authenticate, unavailable, use_nameservers
from shoestring.mail.inbound.message import InboundMessage
from shoestring.mail.inbound.rewrite import may_deliver_to
from shoestring.mail.inbound.server import TRY_LATER, Handler, InboundSMTP, Limits
from shoestring.services import Health

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.config import InboundSettings

log = logging.getLogger("shoestring.mail.inbound")

MailHandler = Callable[[InboundMessage], Awaitable[Any]]
AcceptCheck = Callable[[str], Awaitable[bool]]
# A message at DATA, before the 250: a reason to refuse it (550), or None.
Screen = Callable[[InboundMessage], Awaitable[str | None]]
H = TypeVar("H", bound=MailHandler)
PROCESS_JOB = "shoestring.mail.inbound.process"
CHECK_THREADS = 16  # authentication checks at once (each mostly waits for DNS)
AUTH_BUDGET = 20.0  # seconds for a message's SPF, DKIM and DMARC checks, DNS included


class MailboxFull(Exception):
    """Raise from an `accept` check: the address exists but takes no more mail now (452)."""


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: str
    handler: MailHandler
    accept: AcceptCheck | None
    screen: Screen | None = None


def _is_postmaster(address: str) -> bool:
    return address.rpartition("@")[0].lower() == "postmaster"


UNKNOWN_RECIPIENTS = "smtp-unknown-recipients"
MAX_REMEMBERED = 10_000
TOO_MANY_UNKNOWN = "450 4.7.1 Too many unknown recipients from your address; try again later"


class Inbound:
    """A service: the SMTP server (when `mail.inbound.enabled`) and the handlers it feeds."""

    name = "inbound"

    def __init__(self, app: App) -> None:
        self._app = app
        app.db.add_migrations(spool.MIGRATIONS)
        app.mail  # noqa: B018 - mail for postmaster@ is passed on through the outbox
        self._routes: list[_Route] = []
        self._server: asyncio.Server | None = None
        self._checks: ThreadPoolExecutor | None = None
        self._guessing: dict[str, float] = {}  # client ip -> when it last named an unknown one
        self._postmaster = _Route("postmaster@*", self._to_postmaster, None, None)
        mail = app.settings.mail  # a handler that fails is retried as deliveries are
        self._process = app.job(
            name=PROCESS_JOB, retries=mail.retries, backoff=mail.retry_backoff, timeout=300
        )(self._process_message)

    @property
    def settings(self) -> InboundSettings:
        return self._app.settings.mail.inbound

    def on_mail(
        self, pattern: str, *, accept: AcceptCheck | None = None, screen: Screen | None = None
    ) -> Callable[[H], H]:
        if "@" not in pattern:
            raise ValueError(f"mail pattern {pattern!r} needs a domain part, e.g. '*@example.org'")

        def decorator(handler: H) -> H:
            self._routes.append(_Route(pattern.lower(), handler, accept, screen))
            return handler

        return decorator

    def route(self, recipient: str) -> _Route | None:
        if self.settings.postmaster and _is_postmaster(recipient):
            return self._postmaster  # before the app's patterns: `*@domain` would take it
        return next(
            (r for r in self._routes if fnmatch.fnmatchcase(recipient.lower(), r.pattern)), None
        )

    def _routes_postmaster(self, domain: str) -> bool:
        return any(fnmatch.fnmatchcase(f"postmaster@{domain}", r.pattern) for r in self._routes)

    async def _to_postmaster(self, message: InboundMessage) -> None:
        """Pass mail for postmaster@ on to `mail.inbound.postmaster`, whole, as an attachment."""
        domain = message.recipient.rpartition("@")[2]
        cover = EmailMessage()
        cover["From"] = f"postmaster@{domain}"
        cover["To"] = self.settings.postmaster
        cover["Subject"] = f"To {message.recipient}: {message.subject}"[:200]
        cover.set_content(
            f"This message came for {message.recipient}; it is attached as it arrived, with "
            "the results of our SPF, DKIM and DMARC checks at the top.\n"
        )
        cover.add_attachment(message.parsed)
        await self._app.mail.send_message(cover, to=[self.settings.postmaster])

    # -- the SMTP conversation -------------------------------------------------

    async def accept(self, address: str, ip: str = "") -> str:
        """RCPT: the normalized recipient, or Refused with the reply to give.

        A client (`ip`, an IPv6 address counting by its /64) that named too
        many unknown recipients this hour (`unknown_recipients_per_hour`) gets
        450 for every recipient, known or not: whoever tries out addresses
        learns nothing more.
        """
        if address.lower() == "postmaster" and self.settings.domains:
            # RFC 5321 §4.5.1: `RCPT TO:<Postmaster>`, no domain, MUST be accepted.
            address = f"postmaster@{self.settings.domains[0]}"
        recipient = our_recipient(address, self.settings.domains)
        ip = network(ip) if ip else ""
        probes = {"limit": self.settings.unknown_recipients_per_hour, "per": 3600}
        # Only addresses that named an unknown recipient lately are looked up:
        # the others (nearly all mail) cost no query.
        if ip and time.monotonic() - self._guessing.get(ip, -3600.0) < 3600:
            try:
                await self._app.limits.check(UNKNOWN_RECIPIENTS, ip, **probes)
            except RateLimited:
                raise Refused(TOO_MANY_UNKNOWN) from None
        route = self.route(recipient)
        exists = route is not None
        if route is not None and route.accept is not None:
            try:
                exists = await route.accept(recipient)
            except MailboxFull:
                raise Refused("452 4.2.2 Mailbox full; try again later") from None
        if not exists:
            if ip:
                self._remember_guess(ip)
                with contextlib.suppress(RateLimited):  # counted; refused from the next one on
                    await self._app.limits.hit(UNKNOWN_RECIPIENTS, ip, **probes)
            raise Refused("550 5.1.1 No such mailbox here")
        return recipient

    def _remember_guess(self, ip: str) -> None:
        now = time.monotonic()
        if len(self._guessing) >= MAX_REMEMBERED:  # many addresses: forget the ones past the hour
            self._guessing = {k: t for k, t in self._guessing.items() if now - t < 3600}
        self._guessing[ip] = now

    async def receive(
        self, mail_from: str, recipients: list[str], raw: bytes, ip: str = "", helo: str = ""
    ) -> str:
        """DATA: check, spool the message and its processing job; the 250 once both are committed."""
        if headers.has_bare_line_ending(raw):
            raise Refused("550 5.6.0 Bare CR or LF in the message; send CRLF line endings")
        if b"\0" in raw:
            # RFC 5322 §3.5 (and RFC 6152 for 8BITMIME): no NUL anywhere; parsers and
            # C strings in handlers' storage each read one differently.
            raise Refused("550 5.6.0 NUL characters are not allowed in a message (RFC 5322)")
        if headers.one_plain_from(raw) is None:
            # RFC 5322 §3.6 and RFC 7489 §6.6.1: DMARC must judge the one address
            # a reader will see; a message that hides it is refused (so does Gmail).
            raise Refused(
                "550 5.7.1 The message must start with its header and have one From "
                "field with one address, written plainly (RFC 5322)"
            )
        # As the client sent it, before our own fields: only a true resend is the same.
        dedupe = spool.dedupe_key(mail_from, recipients, raw)
        raw = headers.strip_ours(raw, self.authserv_id)
        checks = functools.partial(
            authenticate, raw, authserv_id=self.authserv_id, ip=ip, mail_from=mail_from, helo=helo
        )
        try:
            verdict, auth = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._checks, checks), AUTH_BUDGET
            )
        except Unreadable:
            raise Refused(
                "550 5.6.0 The message's header could not be read; send it as RFC 5322 says"
            ) from None
        except TimeoutError:
            # DNS that does not answer must not hold the sender's DATA for minutes.
            log.warning("authentication checks took over %.0f s: marked temperror", AUTH_BUDGET)
            verdict, auth = unavailable(self.authserv_id)
        if auth["dmarc"] == "fail" and auth.get("dmarc_policy") in ("reject", "quarantine"):
            # Refused in the session, so the sending server (not us) tells its
            # user: we never send a bounce to a sender that may be forged.
            if auth["dmarc_policy"] == "reject" and self.settings.dmarc_reject == "reject":
                raise Refused("550 5.7.1 Rejected: the sender's domain (DMARC p=reject) disowns it")
            if self.settings.dmarc_reject != "accept":
                auth["quarantine"] = "dmarc"
        # Our trace (RFC 5321 §4.4), under our verdict (RFC 8601 §5: above the trace fields).
        received = (
            f"Received: from {helo or 'unknown'} ([{ip}])\r\n"
            f"\tby {self.authserv_id} with ESMTP; {formatdate()}\r\n"
        )
        raw = verdict + received.encode("ascii", "replace") + raw
        await self._screen(mail_from, recipients, raw, auth)
        async with self._app.db.transaction() as tx:
            spool_id = await spool.store(
                tx, mail_from=mail_from, recipients=recipients, raw=raw, auth=auth, dedupe=dedupe
            )
            if spool_id is not None:
                await self._app.jobs.enqueue_in(tx, self._process, (spool_id,))
        if spool_id is None:
            log.info("duplicate message ignored (already spooled)")
            return "250 2.0.0 Ok: already queued"
        log.info("message %s spooled", spool_id, extra={"recipients": len(recipients)})
        return f"250 2.0.0 Ok: queued as {spool_id}"

    async def _screen(
        self, mail_from: str, recipients: list[str], raw: bytes, auth: dict[str, str]
    ) -> None:
        """Run the routes' `screen`s: Refused (550) with the first reason one gives."""
        received = datetime.now(UTC)
        for recipient in recipients:
            route = self.route(recipient)
            if route is None or route.screen is None:
                continue
            message = InboundMessage(
                id="", mail_from=mail_from, recipient=recipient, recipients=tuple(recipients),
                raw=raw, received_at=received, authentication=auth,
            )  # fmt: skip
            try:
                reason = await route.screen(message)
            except Exception:
                log.exception("screening a message failed")
                raise Refused(TRY_LATER) from None
            if reason:
                # One line of printable text: the reply goes back over SMTP as it is.
                text = "".join(c if c.isprintable() else " " for c in reason)[:200]
                raise Refused(f"550 5.7.1 {text}")

    @functools.cached_property
    def authserv_id(self) -> str:
        """This server's name: in replies and Authentication-Results (getfqdn may ask DNS: once)."""
        return self.settings.hostname or socket.getfqdn()

    # -- processing ------------------------------------------------------------

    async def _process_message(self, spool_id: str) -> None:
        """Run each recipient's handler on its own: one that fails holds back no other.

        The job is retried (with backoff) while a handler fails; recipients done
        are recorded and skipped. On the last attempt the message is finished
        anyway, marked failed, and forgotten like a processed one.
        """
        database = self._app.db.database
        spooled = await spool.load(database, spool_id)
        if spooled is None:
            return  # processed already
        done = list(spooled.done)
        failures: list[Exception] = []
        for recipient in spooled.recipients:
            if recipient in done:
                continue
            try:
                await self._handle(spooled, recipient)
            except Exception as exc:
                failures.append(exc)
                continue
            done.append(recipient)
            if len(done) < len(spooled.recipients):
                # Recorded at once: a crash or a later failure does not run it again.
                await spool.mark_done(database, spool_id, done, finished=False)
        if not failures:
            await spool.mark_done(database, spool_id, done, finished=True)
            return
        attempt = current_attempt()
        if attempt is None or not attempt.last:
            raise failures[0]  # retried with backoff, for the recipients left
        # The type only: an exception's text may quote the message or its addresses.
        kinds = ", ".join(dict.fromkeys(type(exc).__name__ for exc in failures))
        error = (
            f"the handler failed for {len(failures)} of {len(spooled.recipients)} recipients"
            f" after {attempt.number} attempts ({kinds})"
        )
        log.error("message %s: %s; given up", spool_id, error)
        await spool.mark_done(database, spool_id, done, finished=True, error=error)

    async def _handle(self, spooled: spool.Spooled, recipient: str) -> None:
        route = self.route(recipient)
        if route is None:
            log.warning("message %s: no handler for a recipient any more; dropped", spooled.id)
            return
        await route.handler(
            InboundMessage(
                id=spooled.id, mail_from=spooled.mail_from, recipient=recipient,
                recipients=tuple(spooled.recipients), raw=spooled.raw,
                received_at=datetime.fromtimestamp(spooled.received_at, UTC),
                authentication=spooled.auth,
            )
        )  # fmt: skip

    # -- the Service protocol --------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        if not settings.enabled:
            return
        if not settings.domains:
            raise ConfigError(
                "the mail settings", ["mail.inbound.enabled needs mail.inbound.domains"]
            )
        if settings.postmaster and not may_deliver_to(settings.postmaster, set(settings.domains)):
            raise ConfigError(
                "the mail settings",
                ["mail.inbound.postmaster must be an address at another domain (a loop else)"],
            )
        if not settings.postmaster and not any(
            self._routes_postmaster(d) for d in settings.domains
        ):
            log.warning(
                "mail to postmaster@ is refused: set mail.inbound.postmaster (RFC 5321 §4.5.1 "
                "asks every mail domain to take it)"
            )
        certificate = Certificate(settings.tls_cert, settings.tls_key)
        certificate.check()
        if settings.nameservers:
            try:
                use_nameservers(settings.nameservers)
            except ValueError as exc:
                raise ConfigError(
                    "the mail settings", [f"mail.inbound.nameservers: {exc}"]
                ) from None
        # The checks block on DNS: their own threads, so they never starve the app's.
        self._checks = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="mail-auth")
        limits = Limits(
            per_ip=settings.max_connections_per_ip,
            recipients=settings.max_recipients,
            bad_commands=settings.max_bad_commands,
            total=settings.max_connections,
        )
        handler = Handler(self.accept, self.receive)

        def protocol() -> InboundSMTP:
            return InboundSMTP(
                handler, limits, data_size_limit=settings.max_message_size,
                enable_SMTPUTF8=True, hostname=self.authserv_id, ident="shoestring",
                tls_context=certificate.context(), timeout=server.IDLE_TIMEOUT,
                command_call_limit=100,
            )  # fmt: skip

        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                protocol, settings.host, settings.port, reuse_port=True
            )
        except OSError as exc:
            raise ConfigError(
                "the mail settings",
                [
                    f"the SMTP server cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
                ],
            ) from None
        log.info("SMTP server listening on %s:%d", settings.host, settings.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._checks is not None:
            self._checks.shutdown(wait=False, cancel_futures=True)
            self._checks = None

    async def health(self) -> Health:
        if self.settings.enabled and self._server is None:
            return Health(ok=False, detail="the SMTP server is not listening")
        return Health(ok=True)


class Certificate:
    """The STARTTLS certificate and key, read again whenever their files change.

    A renewal (Caddy's, copied for the app by `shoestring deploy`) reaches
    the next connection without a restart. Until the files exist, STARTTLS
    is not offered; a pair that does not load keeps the last good one.
    """

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key or cert
        self._stamp: tuple[int, int] | None = None
        self._context: ssl.SSLContext | None = None

    def check(self) -> None:
        """At start: ConfigError if the files exist but do not load, a warning if they are missing."""
        if not self.cert:
            return
        if self._stamps() is None:
            log.warning("no STARTTLS until the certificate files exist (mail.inbound.tls_cert)")
            return
        try:
            self._load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "the mail settings", [f"mail.inbound.tls_cert/tls_key cannot be loaded: {exc}"]
            ) from None

    def context(self) -> ssl.SSLContext | None:
        """The context for a new connection; None (no STARTTLS) without a certificate."""
        if self.cert and self._stamps() != self._stamp:
            try:
                self._load()
            except (OSError, ssl.SSLError) as exc:  # half-replaced, say: the next one retries
                log.warning("the STARTTLS certificate did not load: %s", exc)
        return self._context

    def _stamps(self) -> tuple[int, int] | None:
        try:
            return os.stat(self.cert).st_mtime_ns, os.stat(self.key).st_mtime_ns
        except OSError:
            return None

    def _load(self) -> None:
        stamp = self._stamps()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._context, self._stamp = context, stamp
