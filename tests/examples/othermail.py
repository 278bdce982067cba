"""An othermail server for the tests: its API, its SMTP port spoken to with swaks, its mail."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoestring.mail import dkim as our_dkim
from tests.e2e.conftest import Server, free_port, run_cli
from tests.examples.conftest import copy_example
from tests.mail.conftest import Sink
from tests.mail.dns import LoopbackDNS

DOMAIN = "othermail.example"
OWNER = "ada.lovelace@owner.example"
BOB = "bob@elsewhere.example"

# Imported first by every Python process that finds it on its path: the
# server then resolves names (SPF, DKIM, DMARC) through the test's DNS server.
SITECUSTOMIZE = """
import os

if os.environ.get("OTHERMAIL_TEST_DNS_PORT"):
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = int(os.environ["OTHERMAIL_TEST_DNS_PORT"])
    resolver.lifetime = 2.0
    dns.resolver.default_resolver = resolver
"""


class Othermail:
    """examples/othermail served by `shoestring run`, its SMTP server on a free port.

    With `sink`, mail goes out over SMTP to it (else to the dev mailbox);
    with `zone`, the server's DNS is that loopback server; with `dkim`, a
    key is made and mail is signed for DOMAIN.
    """

    def __init__(
        self, tmp_path: Path, *, sink: Sink | None = None, zone: LoopbackDNS | None = None,
        dkim: bool = False, **env: str,
    ) -> None:  # fmt: skip
        self.project = copy_example("othermail", tmp_path)
        self.smtp_port = free_port()
        self.sink = sink
        env = {"SHOESTRING_MAIL__INBOUND__PORT": str(self.smtp_port), **env}
        if sink is not None:
            env["SHOESTRING_MAIL__TRANSPORT"] = sink.url
        self.dkim_key = our_dkim.key_path(self.project / "data", DOMAIN, "mail")
        if dkim:
            made = run_cli(self.project, "mail", "dkim", "init", "--domain", DOMAIN)
            assert made.returncode == 0, made.stderr
            env["SHOESTRING_MAIL__DKIM_DOMAIN"] = DOMAIN
        if zone is not None:
            site = tmp_path / "dns-site"
            site.mkdir(exist_ok=True)
            (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env |= {"PYTHONPATH": str(site), "OTHERMAIL_TEST_DNS_PORT": str(zone.port)}
        self.env = env
        self.start()

    def start(self, **env: str) -> None:
        """Start the server (again, after `stop` or `kill`), with `env` added for this run."""
        self.server = Server(self.project, env={**self.env, **env})
        self.server.wait_ready("/_ready")
        self.http = httpx.Client(base_url=self.server.base_url, timeout=10)

    def stop(self) -> str:
        """Stop the server (it must exit cleanly); its log."""
        self.http.close()
        assert self.server.terminate() == 0, self.server.log
        return self.server.log

    def kill(self) -> str:
        """SIGKILL the server; its log."""
        self.http.close()
        self.server.kill()
        return self.server.log

    # -- the API ---------------------------------------------------------------------

    def call(self, method: str, path: str, token: str | None = None, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, json=body or None, headers=headers)

    def sign_up(self, address: str = OWNER) -> str:
        """Sign up and confirm `address` with the mailed code; the token."""
        seen = len(self.sink.received) if self.sink else 0
        assert self.call("POST", "/api/signup", email=address).status_code == 202
        confirmed = self.call("POST", "/api/confirm", email=address, code=self.code(seen))
        assert confirmed.status_code == 200, confirmed.text
        token: str = confirmed.json()["token"]
        return token

    def code(self, seen: int = 0) -> str:
        """The code in the newest confirmation mail (at the sink past `seen`, or the dev mailbox)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.sink is not None and len(self.sink.received) > seen:
                subject = parse(self.sink.received[seen]["data"])["Subject"]
            elif self.sink is None:
                found = [m for m in self.http.get("/_dev/mail").json()["messages"]
                         if "code" in (m["subject"] or "")]  # fmt: skip
                subject = found[0]["subject"] if found else ""
            else:
                subject = ""
            if match := re.search(r"code: (\d{6})", subject):
                return match.group(1)
            time.sleep(0.05)
        raise AssertionError("no confirmation mail")

    def create(self, token: str, **body: Any) -> dict[str, Any]:
        response = self.call("POST", "/api/aliases", token, **body)
        assert response.status_code == 201, response.text
        alias: dict[str, Any] = response.json()
        return alias

    def alias(self, token: str, address: str) -> dict[str, Any]:
        aliases = self.call("GET", "/api/aliases", token).json()["aliases"]
        (found,) = [a for a in aliases if a["address"] == address]
        return found  # type: ignore[no-any-return]

    # -- SMTP --------------------------------------------------------------------------

    def swaks(
        self, *, to: str, mail_from: str = BOB, message: EmailMessage | bytes | None = None,
        local: str = "127.0.0.1",
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Send `message` (or a short note) with swaks, from the address `local`."""
        if shutil.which("swaks") is None:
            pytest.fail("swaks is needed (apt-get install swaks)")
        args = ["swaks", "--server", f"127.0.0.1:{self.smtp_port}", "--local-interface", local,
                "--from", mail_from or "<>", "--to", to, "--timeout", "10"]  # fmt: skip
        if message is None:
            args += ["--header", "Subject: a note", "--body", "hello"]
        else:
            data = message if isinstance(message, bytes) else message.as_bytes()
            path = self.project.parent / f"message-{time.monotonic_ns()}.eml"
            path.write_bytes(data)
            args += ["--data", str(path)]
        return subprocess.run(args, capture_output=True, text=True, timeout=30)

    def delivered(self, count: int) -> list[dict[str, Any]]:
        """The first `count` messages at the sink (waits for them)."""
        assert self.sink is not None
        deadline = time.monotonic() + 15
        while len(self.sink.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.sink.received) >= count, f"{len(self.sink.received)} of {count} arrived"
        return self.sink.received[:count]


def accepted(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0 and "250 2.0.0 Ok: queued" in result.stdout


def refused_at_rcpt(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and re.search(r"RCPT TO:.*\n<\*\* 550 5\.1\.1", result.stdout) is not None  # fmt: skip


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
