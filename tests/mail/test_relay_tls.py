"""The SMTP relay transport against a real server that wants TLS and a login (aiosmtpd)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shoestring.mail.errors import PermanentFailure, TemporaryFailure
from shoestring.mail.transports import open_transport
from tests.certificates import self_signed
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.anyio

USER, PASSWORD = "relay-user", "p@ss word/1"


@dataclass
class Relay:
    """A provider's submission server: TLS, then a login, then mail."""

    port: int = 0
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, over TLS)
    received: list[bytes] = field(default_factory=list)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.logins.append((data.login.decode(), over_tls))
        ok = (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        return "250 OK queued"


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    cert, key = self_signed(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the transport trusts it as a public CA
    return cert, key


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture(params=["starttls", "implicit"])
def relay(request: pytest.FixtureRequest, certificate: tuple[Path, Path]) -> Iterator[Relay]:
    handler = Relay(port=free_port())
    context = _server_context(*certificate)
    options: dict[str, Any] = {"authenticator": handler.authenticate, "auth_require_tls": True}
    if request.param == "starttls":
        options |= {"tls_context": context, "require_starttls": True}
    else:  # all of it over TLS (aiosmtpd's own TLS check only knows STARTTLS)
        options |= {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port, **options)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


async def test_logs_in_over_tls_and_delivers(relay: Relay, request: pytest.FixtureRequest) -> None:
    scheme = "smtps" if request.node.callspec.params["relay"] == "implicit" else "smtp"
    transport = open_transport(
        f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{relay.port}"
    )
    await transport.send("app@example.com", ["ada@example.org"], b"Subject: hi\r\n\r\nbody\r\n")
    assert relay.logins == [(USER, True)]  # the password only ever went over TLS
    assert len(relay.received) == 1 and b"body" in relay.received[0]


async def test_a_wrong_password_is_a_permanent_failure_that_does_not_repeat_it(
    relay: Relay, request: pytest.FixtureRequest
) -> None:
    scheme = "smtps" if request.node.callspec.params["relay"] == "implicit" else "smtp"
    transport = open_transport(f"{scheme}://{USER}:wrong-secret@127.0.0.1:{relay.port}")
    with pytest.raises(PermanentFailure) as failure:
        await transport.send("app@example.com", ["ada@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert str(failure.value).startswith("535")
    assert "wrong-secret" not in str(failure.value)
    assert relay.received == []


async def test_credentials_are_never_sent_without_tls(certificate: tuple[Path, Path]) -> None:
    handler = Relay(port=free_port())  # a server that offers no STARTTLS at all
    controller = Controller(
        handler, hostname="127.0.0.1", port=handler.port,
        authenticator=handler.authenticate, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        transport = open_transport(
            f"smtp://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{handler.port}"
        )
        with pytest.raises(TemporaryFailure):
            await transport.send("app@example.com", ["ada@example.org"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        controller.stop()
    assert handler.logins == [] and handler.received == []
