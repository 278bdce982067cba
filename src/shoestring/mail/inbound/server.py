"""The receiving SMTP server: aiosmtpd's protocol, our rules.

Checks, in the order a client meets them:

- connect: at most `max_connections` open connections in all (421 4.3.2), and
  `max_connections_per_ip` per address (421 4.7.0);
- MAIL: a control character in the address refused (553 5.1.7);
- MAIL: SIZE= over `max_message_size` refused (552, aiosmtpd);
- RCPT: source routes, quotes, spaces and comments in the path refused (553,
  judged on the raw path: aiosmtpd's parser drops them), then addresses.py (no open relay),
  then the app: no handler or handler's `accept` says no (550 5.1.1), mailbox
  full (452 4.2.2); more than `max_recipients` (452 4.5.3);
- DATA: over the size limit (552), bare CR or LF anywhere (550 5.6.0: SMTP
  smuggling), then the spool: the message is committed, with the job that
  processes it, before the 250;
- any time: after `max_bad_commands` errors, 421 and the connection closes;
  AUTH is neither offered nor accepted (502), with or without TLS.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from shoestring.limits import network
from shoestring.mail.inbound.addresses import Refused

# aiosmtpd logs peers at INFO and message lines at DEBUG: never ours to keep.
logging.getLogger("mail.log").setLevel(logging.WARNING)

Accept = Callable[[str, str], Awaitable[str]]  # (recipient, client ip) -> normalized, or Refused
# (mail_from, recipients, raw, client ip, helo) -> the 250 reply, or raises Refused
Receive = Callable[[str, list[str], bytes, str, str], Awaitable[str]]

_PATH = re.compile(r"<([^>]*)>")
# C0 controls, DEL and C1 controls: no address holds one (RFC 5321 §4.1.2, RFC 6531 §3.3).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 5321 §4.1.1.1: a domain or an address literal; printable ASCII, one word.
_HELO_NAME = re.compile(r"[!-~]{1,255}")
TRY_LATER = "451 4.3.0 Temporary failure on our side; try again later"
# RFC 5321 §4.5.3.2: a server waits at least 5 minutes for a command, and while a
# message arrives, 3 minutes for each block of it. Idle time, never a total: a large
# message on a slow link may take longer, as long as its data keeps coming.
IDLE_TIMEOUT = 300.0
log = logging.getLogger("shoestring.mail.inbound")


class Limits:
    """Shared by every connection of one server."""

    def __init__(
        self, *, per_ip: int, recipients: int, bad_commands: int, total: int = 100
    ) -> None:
        self.per_ip = per_ip
        self.recipients = recipients
        self.bad_commands = bad_commands
        # Each session may hold a message of up to max_message_size in memory: the
        # many addresses of one botnet must not add up to all of it.
        self.total = total
        self.open = 0
        self.connections: Counter[str] = Counter()


class InboundSMTP(SMTP):
    """One client connection."""

    def __init__(self, handler: Handler, limits: Limits, **options: Any) -> None:
        super().__init__(handler, **options)
        self._limits = limits
        self._client = ""
        self._errors = 0
        self._receiving = False  # between the 354 to DATA and the end of the message
        self._counted = False  # in the Limits' counts, until the connection is lost

    def connection_made(self, transport: Any) -> None:
        first = self.transport is None  # not the STARTTLS upgrade of a connection
        super().connection_made(transport)
        if not first:
            return
        peer = transport.get_extra_info("peername")
        self._client = network(peer[0]) if peer else ""
        self._counted = True
        self._limits.open += 1
        self._limits.connections[self._client] += 1
        if self._limits.open > self._limits.total:
            transport.write(b"421 4.3.2 Too many connections; try again later\r\n")
            transport.close()
        elif self._limits.connections[self._client] > self._limits.per_ip:
            transport.write(b"421 4.7.0 Too many connections from your address; try later\r\n")
            transport.close()

    def data_received(self, data: bytes) -> None:
        # aiosmtpd resets its timeout per command only; during DATA, bytes arriving
        # mean the client is alive (RFC 5321 §4.5.3.2.5-6).
        if self._receiving:
            self._reset_timeout()
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        self._receiving = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._receiving = False

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._limits.open -= 1
            self._limits.connections[self._client] -= 1
            if self._limits.connections[self._client] <= 0:
                del self._limits.connections[self._client]
            self._client = ""
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        if text[:1] == "5" and not text.startswith("502 5.5.1 HELP"):
            self._errors += 1
            if self._errors >= self._limits.bad_commands and self.transport is not None:
                await super().push("421 4.7.0 Too many errors; closing the connection")
                self.transport.close()

    async def smtp_EHLO(self, arg: str) -> None:
        if await self._helo_name_ok("EHLO", arg):
            await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        if await self._helo_name_ok("HELO", arg):
            await super().smtp_HELO(arg)

    async def _helo_name_ok(self, verb: str, arg: str) -> bool:
        if arg and not _HELO_NAME.fullmatch(arg):
            await self.push(f"501 5.5.4 Syntax: {verb} hostname (an ASCII name or [address])")
            return False
        return True

    async def smtp_AUTH(self, arg: str) -> None:
        # aiosmtpd offers AUTH once TLS is up; a receiving server has no
        # accounts, and logins it would always refuse only invite guessing.
        await self.push("502 5.5.1 AUTH is not offered here: this server only receives mail")

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg and _CONTROL.search(arg):
            # Refused now: taken, it could only fail later, at DATA, on every retry.
            await self.push("553 5.1.7 Control characters are not allowed in the sender address")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        # aiosmtpd parses the path leniently (quotes, comments and spaces dropped,
        # routes skipped) before our checks see it: the raw path is judged here.
        refusal = _refused_path(arg or "")
        if refusal:
            await self.push(refusal)
            return
        assert self.envelope is not None
        if len(self.envelope.rcpt_tos) >= self._limits.recipients:
            await self.push("452 4.5.3 Too many recipients; send the rest in another message")
            return
        await super().smtp_RCPT(arg)


def _refused_path(arg: str) -> str | None:
    """Why a RCPT path (`TO:<...>`) is refused before it is parsed, or None."""
    path = _PATH.search(arg)
    if path is None:
        return None  # no angle brackets: aiosmtpd's syntax error
    inner = path.group(1)
    # `<@a,@b:x@y>`, `<,@a:x@y>`, `<(c)@a:x@y>`: a colon before the domain is a route.
    if inner.lstrip().startswith(("@", ",")) or ":" in inner.rpartition("@")[0]:
        return "553 5.1.3 Source routes are not accepted"
    if '"' in inner:
        return "553 5.1.3 Quoted local parts are not accepted"
    if any(c.isspace() or c in "()" for c in inner):
        return "553 5.1.3 Recipient address syntax: no spaces or comments in <local-part@domain>"
    return None


class Handler:
    """aiosmtpd's handler hooks, calling the app through `accept` and `receive`."""

    def __init__(self, accept: Accept, receive: Receive) -> None:
        self._accept = accept
        self._receive = receive

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's extensions but AUTH (see InboundSMTP.smtp_AUTH)."""
        session.host_name = hostname
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            peer = session.peer[0] if isinstance(session.peer, tuple) else ""
            recipient = await self._accept(address, peer)
        except Refused as refused:
            return refused.reply
        except Exception:
            log.exception("checking a recipient failed")
            return TRY_LATER
        if recipient not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(recipient)
        return "250 2.1.5 Recipient ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        try:
            return await self._receive(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                raw,
                peer,
                session.host_name or "",
            )
        except Refused as refused:
            return refused.reply
        except Exception:
            # The client keeps the message and tries again; nothing half-stored.
            log.exception("receiving a message failed")
            return TRY_LATER

    async def handle_exception(self, error: Exception) -> str:
        """Anything else that escapes: a temporary failure, never our internals in the reply."""
        log.error("SMTP session failed: %s", type(error).__name__)
        return "421 4.3.0 Temporary failure; closing the connection"
