"""Where delivered mail goes, chosen by `mail.transport`.

    dev                          nothing leaves the machine: messages stay in the outbox
    smtp://user:pass@host:587    a relay, STARTTLS when offered (required with credentials)
    smtps://user:pass@host:465   a relay over implicit TLS

Every transport reports failures as TemporaryFailure (retry later) or
PermanentFailure (a 5xx: give up and keep the reason).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from shoestring.mail.errors import MailError, PermanentFailure, TemporaryFailure


class Transport(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None: ...


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
            reason = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(reason) from None
            raise TemporaryFailure(reason) from None
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"{exc.code} {exc.message}"
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
            reason = "; ".join(f"{code} {message}" for code, message in refused.values())
            raise PermanentFailure(f"some recipients refused: {reason}")


def open_transport(spec: str, *, timeout: float = 30.0) -> Transport:
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
    raise MailError(
        "mail.transport must be `dev`, `smtp://user:pass@host:port` or `smtps://user:pass@host:port`"
    )
