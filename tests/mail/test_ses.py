"""The SES transport against moto's SES server on loopback.

Errors moto cannot produce (throttling, a suspended account...) come from a
small HTTP server on loopback that answers as SES does: a status, an
`x-amzn-ErrorType` header and a JSON message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import dkim as dkimpy
import httpx
import pytest
from moto.server import ThreadedMotoServer

from shoestring.mail import MailError, PermanentFailure, TemporaryFailure
from shoestring.mail import dkim as our_dkim
from shoestring.mail.message import compose
from shoestring.mail.ses import SESTransport
from shoestring.mail.transports import open_transport
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.anyio

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment, as in production; nothing from this machine's ~/.aws."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def ses(moto_server: str, aws_environment: None) -> str:
    """moto's SES endpoint, emptied, with example.org verified as a sending domain."""
    httpx.post(f"{moto_server}/moto-api/reset").raise_for_status()
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=moto_server)
    client.create_email_identity(EmailIdentity="example.org")
    return moto_server


def sent_messages(endpoint: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = httpx.get(f"{endpoint}/moto-api/data.json").json()["ses"][
        "RawMessage"
    ]
    return messages


def message(sender: str = "App <noreply@example.org>") -> bytes:
    composed, _ = compose(sender=sender, to=["Ada <ada@example.net>"], subject="Ünïcode ✓", text="4711")  # fmt: skip
    return composed.encode()


async def test_the_dkim_signed_message_goes_out_unchanged(ses: str, tmp_path: Path) -> None:
    key = our_dkim.key_path(tmp_path, "example.org", "s1")
    our_dkim.generate_key(key)
    raw = our_dkim.sign(message(), domain="example.org", selector="s1", key=key.read_bytes())
    transport = open_transport(f"ses://{REGION}?endpoint={ses}")
    assert transport.name == "ses"
    await transport.send("noreply@example.org", ["ada@example.net"], raw)
    (sent,) = sent_messages(ses)
    assert sent["source"] == "noreply@example.org" and "ada@example.net" in sent["destinations"]
    assert sent["raw_data"].encode() == raw
    record = our_dkim.public_key_record(key).encode()
    assert dkimpy.verify(sent["raw_data"].encode(), dnsfunc=lambda name, timeout=5: record)


async def test_an_unverified_sender_is_refused_for_good(ses: str) -> None:
    transport = SESTransport(region=REGION, endpoint_url=ses)
    with pytest.raises(PermanentFailure, match="verify the sender's address or domain") as info:
        await transport.send(
            "noreply@unverified.example", ["ada@example.net"], message("noreply@unverified.example")
        )
    assert "noreply@unverified.example" in str(info.value)  # the sender: what to verify
    assert "ada@" not in str(info.value)
    assert sent_messages(ses) == []


async def test_an_unreachable_endpoint_is_retried() -> None:
    transport = SESTransport(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TemporaryFailure, match="could not reach SES"):
        await transport.send("noreply@example.org", ["ada@example.net"], message())


async def test_more_recipients_than_ses_takes_are_refused_before_sending() -> None:
    transport = SESTransport(region=REGION, endpoint_url="http://127.0.0.1:9")
    recipients = [f"user{i}@example.net" for i in range(51)]
    with pytest.raises(PermanentFailure, match="at most 50 recipients"):
        await transport.send("noreply@example.org", recipients, message())


@pytest.fixture
def ses_error() -> Iterator[tuple[str, list[tuple[int, str, str]]]]:
    """An SES-speaking HTTP server that answers every request with the next scripted error."""
    script: list[tuple[int, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status, code, text = script.pop(0)
            body = json.dumps({"message": text}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "text", "failure", "advice"),
    [
        (429, "TooManyRequestsException", "Maximum sending rate exceeded.", TemporaryFailure, "throttling"),
        (500, "InternalFailure", "", TemporaryFailure, "will be retried"),
        (403, "UnrecognizedClientException", "The security token is invalid.", TemporaryFailure, "ses:SendEmail"),
        (400, "AccountSuspendedException", "Account suspended.", PermanentFailure, "reputation"),
        (400, "SendingPausedException", "Sending paused.", PermanentFailure, "resume it"),
        (400, "MailFromDomainNotVerifiedException", "MAIL FROM not verified.", PermanentFailure, "MX and SPF"),
        (400, "BadRequestException", "Invalid raw message.", PermanentFailure, "invalid"),
        (
            400, "MessageRejected",
            "Email address is not verified. The following identities failed the check in region EU-WEST-1: ada@example.net",
            PermanentFailure, "SES sandbox",
        ),
    ],
)  # fmt: skip
async def test_ses_errors_are_retried_or_given_up_with_advice(
    ses_error: tuple[str, list[tuple[int, str, str]]],
    status: int,
    code: str,
    text: str,
    failure: type[MailError],
    advice: str,
) -> None:
    endpoint, script = ses_error
    script.append((status, code, text))
    transport = SESTransport(region=REGION, endpoint_url=endpoint)
    with pytest.raises(failure) as info:
        await transport.send("noreply@example.org", ["ada@example.net"], message())
    assert type(info.value) is failure
    assert advice in str(info.value) and code in str(info.value)
    assert "ada@" not in str(info.value) and "4711" not in str(info.value)
    assert script == []  # asked once: the outbox does the retrying


def test_the_setting_names_the_region_or_takes_it_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(MailError, match=r"needs an AWS region.*AWS_DEFAULT_REGION"):
        open_transport("ses")
    transport = open_transport("ses://us-east-2")
    assert isinstance(transport, SESTransport) and transport.region == "us-east-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert open_transport("ses").name == "ses"
    with pytest.raises(MailError, match=r"\?endpoint=URL"):
        open_transport("ses://us-east-2?endpoint_url=http://127.0.0.1:1")
