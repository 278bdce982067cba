"""SPF, DKIM and DMARC of received mail, against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import smtplib
import time
from pathlib import Path

import dns.resolver
import pytest

from shoestring.mail import dkim as our_dkim
from shoestring.mail.inbound import service
from tests.mail.dns import LoopbackDNS
from tests.mail.mailroom import DOMAIN, Mailroom

pytestmark = pytest.mark.anyio


def _publish_key(zone: LoopbackDNS, tmp_path: Path, domain: str) -> bytes:
    key = tmp_path / f"{domain}.pem"
    our_dkim.generate_key(key)
    record = our_dkim.public_key_record(key)
    chunks = " ".join(f'"{record[i : i + 250]}"' for i in range(0, len(record), 250))
    zone.records[(f"s1._domainkey.{domain}", "TXT")] = [chunks]
    return key.read_bytes()


def _raw(sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: notes@{DOMAIN}\r\nSubject: hi\r\n"
        f"Message-ID: <{sender.replace('@', '.')}@test>\r\nDate: Wed, 25 Nov 2026 08:00:00 +0000\r\n"
        "\r\nhello\r\n"
    ).encode()


async def _send_raw(room: Mailroom, mail_from: str, raw: bytes) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", room.port, timeout=10) as client:
            client.sendmail(mail_from, [f"notes@{DOMAIN}"], raw)

    await asyncio.to_thread(send)


async def test_authenticated_mail_carries_its_results(
    mailroom: Mailroom, default_dns: LoopbackDNS, tmp_path: Path
) -> None:
    key = _publish_key(default_dns, tmp_path, "sender.example")
    default_dns.records[("sender.example", "TXT")] = ['"v=spf1 ip4:127.0.0.1 -all"']
    default_dns.records[("_dmarc.sender.example", "TXT")] = ['"v=DMARC1; p=reject"']
    signed = our_dkim.sign(
        _raw("ada@sender.example"), domain="sender.example", selector="s1", key=key
    )
    await _send_raw(mailroom, "ada@sender.example", signed)
    await mailroom.until_received(1)
    message = mailroom.received[0]
    assert message.authentication == {
        "spf": "pass", "spf_domain": "sender.example", "dkim": "pass",
        "dkim_domains": "sender.example", "dmarc": "pass", "dmarc_policy": "reject",
        "from_domain": "sender.example",
    }  # fmt: skip
    assert message.raw.startswith(b"Authentication-Results: mx.in.example; spf=pass")
    assert "dkim=pass header.d=sender.example" in message.parsed["Authentication-Results"]


async def test_a_forgery_of_a_p_reject_domain_is_refused_in_the_session(
    mailroom: Mailroom, default_dns: LoopbackDNS
) -> None:
    default_dns.records[("bank.example", "TXT")] = ['"v=spf1 ip4:192.0.2.1 -all"']
    default_dns.records[("_dmarc.bank.example", "TXT")] = ['"v=DMARC1; p=reject"']
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await _send_raw(mailroom, "alerts@bank.example", _raw("alerts@bank.example"))
    assert refused.value.smtp_code == 550 and b"DMARC" in refused.value.smtp_error
    assert await mailroom.spooled() == []  # and we send no bounce to anyone


async def test_a_failure_under_p_quarantine_is_kept_marked(
    mailroom: Mailroom, default_dns: LoopbackDNS
) -> None:
    default_dns.records[("shop.example", "TXT")] = ['"v=spf1 ip4:192.0.2.1 -all"']
    default_dns.records[("_dmarc.shop.example", "TXT")] = ['"v=DMARC1; p=quarantine"']
    await _send_raw(mailroom, "deals@shop.example", _raw("deals@shop.example"))
    await mailroom.until_received(1)
    auth = mailroom.received[0].authentication
    assert (auth["spf"], auth["dmarc"], auth["quarantine"]) == ("fail", "fail", "dmarc")


def test_nameservers_setting_points_the_checks_at_a_resolver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.resolver

    from shoestring.mail.inbound.auth import use_nameservers

    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    use_nameservers(["127.0.0.1:5353", "127.0.0.2:5353"])
    resolver = dns.resolver.get_default_resolver()
    assert (resolver.nameservers, resolver.port) == (["127.0.0.1", "127.0.0.2"], 5353)
    use_nameservers(["::1"])
    assert (
        dns.resolver.get_default_resolver().nameservers,
        dns.resolver.get_default_resolver().port,
    ) == (["::1"], 53)
    with pytest.raises(ValueError, match="one port"):
        use_nameservers(["127.0.0.1:53", "127.0.0.2:5353"])


async def test_dns_that_never_answers_delays_the_250_by_a_bounded_time(
    mailroom: Mailroom, default_dns: LoopbackDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "AUTH_BUDGET", 1.0)
    monkeypatch.setattr(dns.resolver.default_resolver, "lifetime", 30.0)
    default_dns.silent = True
    started = time.monotonic()
    await _send_raw(mailroom, "ada@sender.example", _raw("ada@sender.example"))
    waited = time.monotonic() - started
    await mailroom.until_received(1)
    assert mailroom.received[0].authentication["spf"] == "temperror"
    assert mailroom.received[0].authentication["dmarc"] == "temperror"
    assert waited < 15  # the checks alone would wait 30 s for each lookup
