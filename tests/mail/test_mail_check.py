"""`shoestring mail check` against a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoestring.cli import main
from shoestring.mail import dkim
from tests.mail.dns import LoopbackDNS

runner = CliRunner()


def _project(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "app.py").write_text('from shoestring import App\n\napp = App("checked")\n')
    key = dkim.key_path(tmp_path / "data", "example.org", "mail")
    dkim.generate_key(key)
    return tmp_path, dkim.public_key_record(key)


def _split(record: str) -> str:
    return " ".join(f'"{record[i : i + 250]}"' for i in range(0, len(record), 250))


def _check(project: Path) -> tuple[int, str]:
    result = runner.invoke(
        main, ["mail", "check", "--domain", "example.org", "--project", str(project)]
    )
    return result.exit_code, result.output


def test_published_records_pass(tmp_path: Path, default_dns: LoopbackDNS) -> None:
    project, record = _project(tmp_path)
    default_dns.records = {
        ("example.org", "TXT"): ['"v=spf1 include:_spf.provider.example -all"'],
        ("mail._domainkey.example.org", "TXT"): [_split(record)],
        ("_dmarc.example.org", "TXT"): ['"v=DMARC1; p=reject"'],
    }
    code, output = _check(project)
    assert code == 0, output
    assert output.count("ok") == 3


def test_a_missing_dmarc_and_a_stale_dkim_key_are_reported(
    tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    project, _ = _project(tmp_path)
    other = tmp_path / "old.pem"
    dkim.generate_key(other)  # the key DNS still publishes is an older one
    default_dns.records = {
        ("example.org", "TXT"): ['"v=spf1 mx -all"'],
        ("mail._domainkey.example.org", "TXT"): [_split(dkim.public_key_record(other))],
    }
    code, output = _check(project)
    assert code == 1
    assert "different  TXT mail._domainkey.example.org" in output
    assert "missing  TXT _dmarc.example.org" in output
    assert "2 record(s) missing, different or invalid" in output


def _ed25519_record(record: str) -> str:
    return record.replace("k=rsa", "k=ed25519")


@pytest.mark.parametrize(
    ("spf", "dkim_of", "dmarc", "verdicts"),
    [
        # RFC 7208 §4.5: two SPF records are a permerror; `v=spf1x` is no SPF record
        (
            ['"v=spf1 mx -all"', '"v=spf1 a -all"'],
            str,
            ['"v=DMARC1; p=reject"'],
            ["invalid", "ok", "ok"],
        ),
        (['"v=spf1x mx -all"'], str, ['"v=DMARC1; p=reject"'], ["missing", "ok", "ok"]),
        # RFC 7489 §6.6.3: two DMARC records are none; §6.3: p must be a known policy
        (
            ['"v=spf1 -all"'],
            str,
            ['"v=DMARC1; p=reject"', '"v=DMARC1; p=none"'],
            ["ok", "ok", "invalid"],
        ),
        (['"v=spf1 -all"'], str, ['"v=DMARC1; p=bogus"'], ["ok", "ok", "invalid"]),
        # RFC 7489 §6.4: whitespace around tags is allowed
        (['"v=spf1 -all"'], str, ['"v = DMARC1 ; p = reject ;"'], ["ok", "ok", "ok"]),
        # our RSA key published as an ed25519 one: no verifier can use it
        (['"v=spf1 -all"'], _ed25519_record, ['"v=DMARC1; p=reject"'], ["ok", "invalid", "ok"]),
    ],
)
def test_records_are_read_tag_by_tag(
    tmp_path: Path, default_dns: LoopbackDNS, spf: list[str], dkim_of: Callable[[str], str],
    dmarc: list[str], verdicts: list[str],
) -> None:  # fmt: skip
    project, record = _project(tmp_path)
    default_dns.records = {
        ("example.org", "TXT"): spf,
        ("mail._domainkey.example.org", "TXT"): [_split(dkim_of(record))],
        ("_dmarc.example.org", "TXT"): dmarc,
    }
    code, output = _check(project)
    lines = " ".join(output.split())
    names = ["example.org", "mail._domainkey.example.org", "_dmarc.example.org"]
    for verdict, name in zip(verdicts, names, strict=True):
        assert f"{verdict} TXT {name}" in lines, output
    assert code == (0 if set(verdicts) == {"ok"} else 1)
