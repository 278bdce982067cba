"""Direct-to-MX delivery against a real DNS server and real SMTP servers on loopback."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from shoestring.mail import PermanentFailure, TemporaryFailure
from shoestring.mail.direct import DirectTransport, STSPolicy, parse_policy
from shoestring.mail.transports import open_transport
from tests.mail.conftest import Sink
from tests.mail.dns import LoopbackDNS

pytestmark = pytest.mark.anyio

RAW = b"From: app@example.org\r\nTo: ada@example.test\r\nSubject: hi\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n"


class RecordingSink(Sink):
    """A sink that refuses some recipients at RCPT and notes whether each session used TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: dict[str, str] = {}
        self.tls: list[bool] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def smtp_server(host: str, port: int, tls: ssl.SSLContext | None = None) -> Iterator[RecordingSink]:
    handler = RecordingSink()
    handler.port = port
    controller = Controller(handler, hostname=host, port=port, tls_context=tls)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def direct(zone: LoopbackDNS, port: int, **options: Any) -> DirectTransport:
    async def no_policy(domain: str) -> str:
        raise OSError(f"no MTA-STS policy served for {domain} in this test")

    options.setdefault("policy_fetcher", no_policy)
    return DirectTransport(port=port, resolver=zone.resolver(), timeout=5, **options)


def one_domain(zone: LoopbackDNS) -> None:
    zone.records = {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("mx.example.test", "A"): ["127.0.0.1"],
    }


# -- routing -------------------------------------------------------------------


async def test_each_domain_gets_its_recipients_at_its_mx(zone: LoopbackDNS, sink: Sink) -> None:
    zone.records = {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("mx.example.test", "A"): ["127.0.0.1"],
        ("other.test", "MX"): ["10 mail.other.test."],
        ("mail.other.test", "A"): ["127.0.0.1"],
    }
    recipients = ["ada@example.test", "bob@other.test", "cy@example.test"]
    await direct(zone, sink.port).send("app@example.org", recipients, RAW)
    envelopes = sorted((r["from"], r["to"]) for r in sink.received)
    assert envelopes == [
        ("app@example.org", ["ada@example.test", "cy@example.test"]),
        ("app@example.org", ["bob@other.test"]),
    ]
    assert all(r["data"].startswith(b"From: app@example.org") for r in sink.received)


async def test_the_preferred_mx_gets_it_and_the_next_when_it_is_down(
    zone: LoopbackDNS, sink: Sink
) -> None:
    zone.records = {
        ("example.test", "MX"): ["20 backup.example.test.", "10 primary.example.test."],
        ("backup.example.test", "A"): ["127.0.0.1"],
        ("primary.example.test", "A"): ["127.0.0.2"],
    }
    transport = direct(zone, sink.port)
    with smtp_server("127.0.0.2", sink.port) as primary:
        await transport.send("app@example.org", ["ada@example.test"], RAW)
    assert len(primary.received) == 1 and sink.received == []
    await transport.send("app@example.org", ["ada@example.test"], RAW.replace(b"<1@", b"<2@"))
    assert len(sink.received) == 1


async def test_a_domain_without_mx_gets_mail_at_its_own_address(
    zone: LoopbackDNS, sink: Sink
) -> None:
    zone.records = {("example.test", "A"): ["127.0.0.1"]}
    await direct(zone, sink.port).send("app@example.org", ["ada@example.test"], RAW)
    assert [r["to"] for r in sink.received] == [["ada@example.test"]]


async def test_a_null_mx_is_refused_for_good_without_connecting(
    zone: LoopbackDNS, sink: Sink
) -> None:
    zone.records = {("example.test", "MX"): ["0 ."], ("example.test", "A"): ["127.0.0.1"]}
    with pytest.raises(PermanentFailure, match=r"example\.test: accepts no mail.*null MX") as info:
        await direct(zone, sink.port).send("app@example.org", ["ada@example.test"], RAW)
    assert "ada@" not in str(info.value)
    assert sink.attempts == 0 and sink.received == []


async def test_a_domain_that_does_not_exist_is_refused_for_good(
    zone: LoopbackDNS, sink: Sink
) -> None:
    with pytest.raises(PermanentFailure, match=r"nowhere\.test: the domain does not exist"):
        await direct(zone, sink.port).send("app@example.org", ["ada@nowhere.test"], RAW)


async def test_an_unreachable_domain_is_temporary(zone: LoopbackDNS, sink: Sink) -> None:
    one_domain(zone)
    zone.records[("mx.example.test", "A")] = ["127.0.0.2"]  # nothing listens there
    with pytest.raises(TemporaryFailure, match=r"example\.test: no mail server took it"):
        await direct(zone, sink.port).send("app@example.org", ["ada@example.test"], RAW)


# -- replies -------------------------------------------------------------------


async def test_a_550_at_rcpt_is_permanent_and_the_others_still_get_it(
    zone: LoopbackDNS, sink: Sink
) -> None:
    one_domain(zone)
    with smtp_server("127.0.0.2", sink.port) as server:
        zone.records[("mx.example.test", "A")] = ["127.0.0.2"]
        server.refuse["ghost@example.test"] = "550 5.1.1 <ghost@example.test>: no such user"
        with pytest.raises(PermanentFailure) as info:
            await direct(zone, sink.port).send(
                "app@example.org", ["ada@example.test", "ghost@example.test"], RAW
            )
    assert [r["to"] for r in server.received] == [["ada@example.test"]]
    message = str(info.value)
    assert message.startswith("1 of 2 recipients refused: example.test: 550 5.1.1")
    assert "ghost@" not in message and "<address>" in message


async def test_a_451_is_temporary_and_the_retry_reaches_only_who_lacks_it(
    zone: LoopbackDNS, sink: Sink
) -> None:
    one_domain(zone)
    zone.records[("other.test", "MX")] = ["10 mx.example.test."]
    sink.replies = ["451 4.7.1 greylisted, come back later"]
    transport = direct(zone, sink.port)
    recipients = ["ada@example.test", "bob@other.test"]
    with pytest.raises(TemporaryFailure, match="1 of 2 recipients deferred") as info:
        await transport.send("app@example.org", recipients, RAW)
    assert "example.test: 451 4.7.1 greylisted" in str(info.value)
    assert "1 already have it" in str(info.value)
    assert [r["to"] for r in sink.received] == [["bob@other.test"]]
    await transport.send("app@example.org", recipients, RAW)
    assert [r["to"] for r in sink.received] == [["bob@other.test"], ["ada@example.test"]]


# -- TLS and MTA-STS -----------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Any]:
    """A CA and, signed by it, a certificate for mx.example.test."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, mx_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    leaf = certificate("mx.example.test", mx_key, "Test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "mx.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "mx.key").write_bytes(
        mx_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "mx.pem", tmp_path / "mx.key")
    trusting = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return {"server": server, "trusting": trusting}


POLICY = "version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"


def sts_domain(zone: LoopbackDNS, policy_id: str = "20250101") -> None:
    one_domain(zone)
    zone.records[("_mta-sts.example.test", "TXT")] = [f'"v=STSv1; id={policy_id}"']


async def test_tls_is_used_when_offered_even_if_the_certificate_does_not_verify(
    zone: LoopbackDNS, sink: Sink, certificates: dict[str, Any]
) -> None:
    one_domain(zone)
    with smtp_server("127.0.0.2", sink.port, tls=certificates["server"]) as server:
        zone.records[("mx.example.test", "A")] = ["127.0.0.2"]
        await direct(zone, sink.port).send("app@example.org", ["ada@example.test"], RAW)
    assert len(server.received) == 1 and server.tls == [True]


async def test_mta_sts_enforce_with_a_non_matching_mx_delivers_nothing(
    zone: LoopbackDNS, sink: Sink
) -> None:
    sts_domain(zone)

    async def policy(domain: str) -> str:
        assert domain == "example.test"
        return POLICY.format(mode="enforce", mx="*.mail.example.net")

    with pytest.raises(TemporaryFailure, match="matches its MTA-STS policy"):
        await direct(zone, sink.port, policy_fetcher=policy).send(
            "app@example.org", ["ada@example.test"], RAW
        )
    assert sink.attempts == 0 and sink.received == []


async def test_mta_sts_testing_mode_reports_but_delivers(zone: LoopbackDNS, sink: Sink) -> None:
    sts_domain(zone)

    async def policy(domain: str) -> str:
        return POLICY.format(mode="testing", mx="*.mail.example.net")

    await direct(zone, sink.port, policy_fetcher=policy).send(
        "app@example.org", ["ada@example.test"], RAW
    )
    assert len(sink.received) == 1


async def test_mta_sts_enforce_delivers_only_over_verified_tls(
    zone: LoopbackDNS, sink: Sink, certificates: dict[str, Any]
) -> None:
    sts_domain(zone)
    fetched: list[str] = []

    async def policy(domain: str) -> str:
        fetched.append(domain)
        return POLICY.format(mode="enforce", mx="*.example.test")

    with smtp_server("127.0.0.2", sink.port, tls=certificates["server"]) as server:
        zone.records[("mx.example.test", "A")] = ["127.0.0.2"]
        # The system trust store does not know the test CA: no delivery, not even unverified.
        untrusting = direct(zone, sink.port, policy_fetcher=policy)
        with pytest.raises(TemporaryFailure, match=r"STARTTLS failed.*CERTIFICATE_VERIFY_FAILED"):
            await untrusting.send("app@example.org", ["ada@example.test"], RAW)
        assert server.received == []
        trusting = direct(
            zone, sink.port, policy_fetcher=policy, tls_context=certificates["trusting"]
        )
        await trusting.send("app@example.org", ["ada@example.test"], RAW)
        await trusting.send("app@example.org", ["ada@example.test"], RAW.replace(b"<1@", b"<2@"))
    assert len(server.received) == 2 and server.tls == [True, True]
    assert fetched == ["example.test", "example.test"]  # then cached for max_age


async def test_mta_sts_enforce_refuses_a_server_without_starttls(
    zone: LoopbackDNS, sink: Sink
) -> None:
    sts_domain(zone)

    async def policy(domain: str) -> str:
        return POLICY.format(mode="enforce", mx="mx.example.test")

    with pytest.raises(TemporaryFailure, match="offers no STARTTLS"):
        await direct(zone, sink.port, policy_fetcher=policy).send(
            "app@example.org", ["ada@example.test"], RAW
        )
    assert sink.received == []


# -- policy parsing --------------------------------------------------------------


def test_policy_patterns_match_one_leftmost_label() -> None:
    policy = STSPolicy(id="1", mode="enforce", mx=("mail.example.com", "*.example.net"), max_age=1)
    assert policy.allows("mail.example.com.") and policy.allows("MX1.Example.Net")
    assert not policy.allows("a.b.example.net") and not policy.allows("example.net")
    assert not policy.allows("evil-mail.example.com")


def test_a_policy_without_version_or_mx_is_no_policy() -> None:
    assert parse_policy("mode: enforce\nmx: a.example\nmax_age: 60", "1") is None
    assert parse_policy("version: STSv1\nmode: enforce\nmax_age: 60", "1") is None
    policy = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 99999999999", "1"
    )
    assert policy is not None and policy.max_age == 31_557_600


@given(st.text())
def test_any_policy_text_parses_or_is_refused(text: str) -> None:
    policy = parse_policy(text, "1")
    assert policy is None or policy.mode in ("enforce", "testing", "none")


def test_the_direct_setting_opens_the_direct_transport() -> None:
    assert open_transport("direct").name == "direct"
