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

import re
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from shoestring.mail.errors import MailError, PermanentFailure, TemporaryFailure


class Transport(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None: ...


# Loose on purpose: it only has to find what a server may echo back in a reply
# ("550 5.1.1 <ada@example.net>: user unknown"), not validate anything.
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*")


def without_addresses(text: str, *, keep: str | None = None) -> str:
    """`text` with every email address but `keep` (the sender) replaced by `<address>`."""
    kept = keep.lower() if keep else None
    return _ADDRESS.sub(lambda match: match[0] if match[0].lower() == kept else "<address>", text)


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

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
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
            codes = [error.code for error in exc.recipients]
            reason = without_addresses("; ".join(f"{e.code} {e.message}" for e in exc.recipients))
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(reason) from None
            raise TemporaryFailure(reason) from None
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
        if refused:
            # Some recipients were accepted: the message is delivered to them;
            # the refusals are reported, not retried, so nobody gets it twice.
            reason = without_addresses("; ".join(f"{c} {m}" for c, m in refused.values()))
            raise PermanentFailure(f"some recipients refused: {reason}")


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
