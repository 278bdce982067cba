from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shoestring.mail.dkim import public_key_record
from tests.e2e.conftest import run_cli as shoestring

APP = """
from shoestring import App

app = App("maildemo")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def test_dkim_init_then_dns_prints_the_records(project: Path) -> None:
    created = shoestring(
        project, "mail", "dkim", "init", "--domain", "example.org", "--selector", "s1"
    )
    assert created.returncode == 0, created.stderr
    key = project / "data" / "mail" / "dkim" / "s1._domainkey.example.org.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert "s1._domainkey.example.org  TXT" in created.stdout and "p=" in created.stdout

    # the same domain however it is written: DNS names ignore case and a final dot
    again = shoestring(
        project, "mail", "dkim", "init", "--domain", "Example.ORG.", "--selector", "s1"
    )
    assert again.returncode == 1 and "exists already" in again.stderr

    records = shoestring(
        project,
        "mail",
        "dns",
        "--domain",
        "example.org",
        "--selector",
        "s1",
        "--mx",
        "mx.example.org",
    )
    assert records.returncode == 0, records.stderr
    for expected in (
        "v=spf1",
        "v=DKIM1; k=rsa; p=",
        "_dmarc.example.org",
        "v=DMARC1",
        "10 mx.example.org.",
    ):
        assert expected in records.stdout
    # RFC 1035 §3.3.14: a 2048-bit key is longer than one 255-octet string may hold
    (dkim_line,) = [line for line in records.stdout.splitlines() if "_domainkey" in line]
    strings = re.findall(r'"([^"]*)"', dkim_line)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    assert dkim_line.split("\t")[-1] == " ".join(f'"{s}"' for s in strings)
    assert "".join(strings) == public_key_record(key)


def test_dns_takes_the_domain_in_any_case_and_refuses_what_is_no_host_name(
    project: Path,
) -> None:
    records = shoestring(project, "mail", "dns", "--domain", "Example.ORG.")
    assert records.returncode == 0, records.stderr
    assert "_dmarc.example.org.\t" in records.stdout and "ORG" not in records.stdout
    refused = shoestring(project, "mail", "dns", "--domain", "demo.example;x")
    assert refused.returncode != 0 and refused.stdout == ""
    assert "--domain 'demo.example;x' is not a host name" in refused.stderr


def test_ls_and_show_the_dev_outbox(project: Path) -> None:
    import asyncio

    from shoestring.cli.project_app import load_project, opened

    async def send() -> str:
        app = load_project(project)
        async with opened(app):
            return await app.mail.send(to="ada@example.net", subject="Your code", text="code 4711")

    message_id = asyncio.run(send())
    listed = shoestring(project, "mail", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["id"] == message_id and entry["recipients"] == ["ada@example.net"]
    assert entry["state"] == "queued"  # no worker ran: it waits in the outbox
    shown = shoestring(project, "mail", "show", message_id)
    assert "Subject: Your code" in shown.stdout and "code 4711" in shown.stdout
    missing = shoestring(project, "mail", "show", "nope")
    assert missing.returncode == 1 and "no message nope" in missing.stderr
    assert "Subject: Your code" in shoestring(project, "mail", "show", message_id[:8]).stdout

    (job,) = [
        json.loads(line) for line in shoestring(project, "jobs", "ls", "--json").stdout.splitlines()
    ]
    assert shoestring(project, "jobs", "cancel", job["id"]).returncode == 0
    listed = shoestring(project, "mail", "ls", "--json")
    assert json.loads(listed.stdout)["state"] == "cancelled"  # its delivery will not run
