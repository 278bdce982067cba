"""STARTTLS on the receiving server: what EHLO offers before and after it, and mail over it."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.certificates import self_signed
from tests.mail.dns import LoopbackDNS
from tests.mail.mailroom import DOMAIN, Mailroom, note, open_mailroom

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tls_mailroom(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> AsyncIterator[tuple[Mailroom, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path / "tls")
    async with open_mailroom(database_url, tmp_path, tls_cert=str(cert), tls_key=str(key)) as room:
        yield room, ssl.create_default_context(cafile=cert)


def _extensions(client: smtplib.SMTP) -> set[str]:
    client.ehlo("client.example")
    return {name.upper() for name in client.esmtp_features}


async def test_ehlo_offers_starttls_and_never_auth(
    tls_mailroom: tuple[Mailroom, ssl.SSLContext],
) -> None:
    room, context = tls_mailroom

    def session() -> tuple[set[str], set[str], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", room.port, timeout=10) as client:
            before = _extensions(client)
            client.starttls(context=context)
            after = _extensions(client)
            # Not advertised, and refused when asked anyway: port 25 takes mail
            # for our domains from anyone and has no accounts to log in to.
            refused = client.docmd("AUTH", "PLAIN AGFkYQBzZWNyZXQ=")
            return before, after, refused

    before, after, (code, _) = await asyncio.to_thread(session)
    assert {"STARTTLS", "SIZE", "8BITMIME", "SMTPUTF8"} <= before
    assert "AUTH" not in before
    assert {"SIZE", "8BITMIME", "SMTPUTF8"} <= after
    assert "AUTH" not in after and "STARTTLS" not in after
    assert code == 502


async def test_mail_over_starttls_with_an_international_address_arrives(
    tls_mailroom: tuple[Mailroom, ssl.SSLContext],
) -> None:
    room, context = tls_mailroom
    recipient = f"zoë@{DOMAIN}"
    message = note("über")
    message.replace_header("To", recipient)

    def send() -> dict[str, object]:
        with smtplib.SMTP("127.0.0.1", room.port, timeout=10) as client:
            client.starttls(context=context)
            return client.send_message(
                message, "sender@elsewhere.example", [recipient], mail_options=["SMTPUTF8"]
            )

    assert await asyncio.to_thread(send) == {}
    await room.until_received(1)
    assert room.received[0].recipient == recipient
    assert room.received[0].subject == "über"


async def test_a_certificate_that_appears_or_is_renewed_is_used_without_a_restart(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    live = tmp_path / "live"  # where a deploy copies the certificate Caddy obtained
    cert, key = live / "cert.pem", live / "key.pem"

    def offered() -> tuple[bool, bytes | None]:
        with smtplib.SMTP("127.0.0.1", room.port, timeout=10) as client:
            if "STARTTLS" not in _extensions(client):
                return False, None
            client.starttls(context=ssl._create_unverified_context())  # noqa: S323 - compared below
            return True, client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]

    async with open_mailroom(database_url, tmp_path, tls_cert=str(cert), tls_key=str(key)) as room:
        assert await asyncio.to_thread(offered) == (False, None)  # not there yet: no STARTTLS
        first = self_signed(tmp_path / "first")
        live.mkdir()
        for source, target in zip(first, (cert, key), strict=True):
            target.write_bytes(source.read_bytes())
        on, served = await asyncio.to_thread(offered)
        assert on and served == ssl.PEM_cert_to_DER_cert(first[0].read_text())
        renewed = self_signed(tmp_path / "renewed")
        for source, target in zip(renewed, (cert, key), strict=True):
            target.write_bytes(source.read_bytes())
        _, served = await asyncio.to_thread(offered)
        assert served == ssl.PEM_cert_to_DER_cert(renewed[0].read_text())
