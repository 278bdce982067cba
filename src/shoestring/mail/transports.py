"""Where delivered mail goes, chosen by `mail.transport`.

    dev                          nothing leaves the machine: messages stay in the outbox
    smtp://user:pass@host:587    a relay, STARTTLS when offered (required with credentials)
    smtps://user:pass@host:465   a relay over implicit TLS
    ses, ses://REGION            Amazon SES (API v2), credentials from the AWS environment
    direct                       straight to each recipient domain's MX, STARTTLS, MTA-STS

Every transport reports failures as TemporaryFailure (retry later) or
PermanentFailure (a 5xx: give up and keep the reason). Failure reasons are
stored and logged, so they never carry addresses (see `without_addresses`).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
import ssl
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from shoestring.mail.errors import MailError, PermanentFailure, TemporaryFailure
from shoestring.mail.ledger import Ledger


class Transport(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None: ...


# Loose on purpose: it only has to find what a server may echo back in a reply
# ("550 5.1.1 <ada@example.net>: user unknown"), not validate anything; the
# domain may be an address literal (`bob@[192.0.2.7]`, RFC 5321 §4.1.3).
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:\[[\w.:-]+\]|[\w-]+(?:\.[\w-]+)*)")


def without_addresses(text: str, *, keep: str | None = None) -> str:
    """`text` with every email address but `keep` (the sender) replaced by `<address>`."""
    kept = keep.lower() if keep else None
    return _ADDRESS.sub(lambda match: match[0] if match[0].lower() == kept else "<address>", text)


def without_recipients(text: str, recipients: list[str], raw: bytes) -> str:
    """`text` (a server's reason) with the recipients' local parts and names replaced.

    Servers echo more than whole addresses ("user dave unknown, Dave Smith"):
    a failure's reason is kept and logged, the people it was for are not.
    """
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    named = email.utils.getaddresses([*parsed.get_all("To", []), *parsed.get_all("Cc", [])])
    words = {address.rpartition("@")[0] for address in recipients}
    words |= {name for name, _ in named}
    for word in sorted((w for w in words if len(w) >= 2), key=len, reverse=True):
        text = re.sub(rf"(?<![\w.+-]){re.escape(word)}(?![\w+-])", "<recipient>", text, flags=re.I)
    return text


class DevTransport:
    """Keeps messages in the outbox for `shoestring mail ls/show`; sends nothing."""

    name = "dev"

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        return None


@dataclass(frozen=True)
class SMTPTransport:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    timeout: float
    tls_context: ssl.SSLContext | None = None
    name: str = "smtp"

    # Who already has a part-delivered message: a retry goes only to the rest.
    _ledger: Ledger = field(default_factory=Ledger, init=False, repr=False, compare=False)

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        attempt = self._ledger.begin(sender, recipients, raw)
        try:
            refused = await self._transaction(sender, attempt.unsettled, raw)
        except (TemporaryFailure, PermanentFailure) as failure:
            if not attempt.settled:
                raise  # nothing delivered yet: the whole message failed, as the server said
            # A retry of a part-delivered message: the failure is the rest's.
            if isinstance(failure, PermanentFailure):
                for recipient in attempt.unsettled:
                    attempt.refused(recipient, str(failure))
            else:
                attempt.defer(str(failure))
            refused = {}
        for recipient in attempt.unsettled:
            reply = refused.get(recipient)
            if reply is None:
                attempt.delivered(recipient)
            elif 500 <= reply[0] < 600:
                attempt.refused(recipient, without_addresses(f"{reply[0]} {reply[1]}", keep=sender))
            else:
                attempt.defer(without_addresses(f"{reply[0]} {reply[1]}", keep=sender))
        # 4xx-refused recipients are retried, 5xx ones fail with their reason, and
        # those accepted are remembered so the retry does not send them a second copy.
        self._ledger.conclude(attempt)

    async def _transaction(
        self, sender: str, recipients: list[str], raw: bytes
    ) -> dict[str, tuple[int, str]]:
        """The recipients the relay refused (code, reply); raises when it took the message
        for nobody."""
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.implicit_tls,
            # With credentials, never send them in the clear: STARTTLS or fail.
            start_tls=None if self.username is None or self.implicit_tls else True,
            timeout=self.timeout,
            tls_context=self.tls_context,
        )
        try:
            await client.connect()
            if self.username is not None and self.password is not None:
                await client.login(self.username, self.password)
            refused, _ = await client.sendmail(sender, recipients, raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused, each with its own reply: a 4xx one may yet take it.
            return {e.recipient: (e.code, e.message) for e in exc.recipients}
        except aiosmtplib.SMTPResponseException as exc:
            reason = without_addresses(f"{exc.code} {exc.message}", keep=sender)
            if 500 <= exc.code < 600:
                raise PermanentFailure(reason) from None
            raise TemporaryFailure(reason) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from None
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return {r: (reply.code, reply.message) for r, reply in refused.items()}


def open_transport(spec: str, *, timeout: float = 30.0) -> Transport:
    """The transport `mail.transport` names; MailError says what a valid setting looks like."""
    if spec == "dev":
        return DevTransport()
    parts = urlsplit(spec)
    if parts.scheme in ("smtp", "smtps") and parts.hostname:
        return SMTPTransport(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=parts.scheme == "smtps",
            timeout=timeout,
        )
    # Imported here: those modules import this one, and boto3 alone adds ~150 ms
    # to every start that does not use SES.
    if spec == "ses" or parts.scheme == "ses":
        from shoestring.mail.ses import SESTransport

        query = parse_qs(parts.query)
        if set(query) - {"endpoint"} or len(query.get("endpoint", [])) > 1:
            raise MailError(
                "mail.transport `ses://REGION` takes one optional parameter: `?endpoint=URL`"
            )
        endpoint = query["endpoint"][0] if "endpoint" in query else None
        return SESTransport(region=parts.hostname, endpoint_url=endpoint, timeout=timeout)
    if spec == "direct":
        from shoestring.mail.direct import DirectTransport

        return DirectTransport(timeout=timeout)
    raise MailError(
        "mail.transport must be `dev`, `smtp://user:pass@host:port`,"
        " `smtps://user:pass@host:port`, `ses`, `ses://REGION` or `direct`"
    )
