"""`shoestring mail`: the outbox, DKIM keys and the DNS records to publish."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.cli.project_app import clipped, full_id, id_column, project_option, run_with_app
from shoestring.config import load_settings
from shoestring.errors import ShoestringError
from shoestring.mail import OutboxEntry
from shoestring.mail import dkim as dkim_keys


def _when(epoch: float | None) -> str:
    return (
        "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
    )


@click.group("mail")
def mail_group() -> None:
    """Outbound mail: the outbox, DKIM keys and DNS records."""


@mail_group.command("ls")
@project_option
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
    help="List at most this many messages.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def mail_ls(project_dir: Path, limit: int, as_json: bool) -> None:
    """List recent messages, newest first, with their delivery state."""

    async def action(app: App) -> list[OutboxEntry]:
        return await app.mail.entries(limit)

    entries = run_with_app(project_dir, action)
    if as_json:
        for entry in entries:
            record = dataclasses.asdict(entry)
            record.pop("message")
            click.echo(json.dumps(record))
        return
    table = RichTable()
    id_column(table)
    for column in ("to", "subject", "state", "tries", "created (UTC)"):
        table.add_column(column)
    table.add_column("error", overflow="fold")
    for entry in entries:
        table.add_row(
            entry.id, ", ".join(entry.recipients) or "(forgotten)", entry.subject or "",
            entry.state, str(entry.attempts), _when(entry.created_at), clipped(entry.last_error, 200),
        )  # fmt: skip
    Console().print(table)


@mail_group.command("show")
@project_option
@click.argument("message_id")
def mail_show(project_dir: Path, message_id: str) -> None:
    """Print one message as it was (or will be) sent, headers and MIME body."""

    async def action(app: App) -> list[OutboxEntry]:
        found = await full_id(app.db.database, "shoestring_outbox", message_id)
        return await app.mail.entries(1, message_id=found)

    entries = run_with_app(project_dir, action)
    if not entries:
        raise ShoestringError(f"no message {message_id}; see `shoestring mail ls`")
    if entries[0].message is None:
        raise ShoestringError(
            f"message {message_id} was delivered and its body deleted (set mail.keep_sent to keep bodies)"
        )
    click.echo(entries[0].message, nl=False)


@mail_group.group("dkim")
def dkim_group() -> None:
    """DKIM signing keys."""


@dkim_group.command("init")
@project_option
@click.option("--domain", required=True, help="The domain mail is sent from.")
@click.option("--selector", default="mail", show_default=True, help="A name for this key.")
def dkim_init(project_dir: Path, domain: str, selector: str) -> None:
    """Create a DKIM key for DOMAIN and print the DNS record to publish.

    The private key stays in the data directory, readable only by its owner.
    Then set `mail.dkim_domain` (and `mail.dkim_selector`) in shoestring.toml.
    """
    domain = _hostname(domain, "--domain")
    settings = load_settings(project_dir)
    path = dkim_keys.key_path(settings.data_dir, domain, selector)
    dkim_keys.generate_key(path)
    click.echo(f"created {path}")
    click.echo("publish this TXT record:")
    click.echo(f'  {selector}._domainkey.{domain}  TXT  "{dkim_keys.public_key_record(path)}"')


@mail_group.command("dns")
@project_option
@click.option("--domain", required=True, help="The domain mail is sent from.")
@click.option("--selector", default=None, help="DKIM selector [default: mail.dkim_selector].")
@click.option(
    "--mx", "mx_host", default=None, help="Host receiving mail for DOMAIN, to print an MX record."
)
def mail_dns(project_dir: Path, domain: str, selector: str | None, mx_host: str | None) -> None:
    """Print the SPF, DKIM, DMARC (and MX) records DOMAIN should publish."""
    domain = _hostname(domain, "--domain")
    mx_host = _hostname(mx_host, "--mx") if mx_host else None
    settings = load_settings(project_dir)
    selector = selector or settings.mail.dkim_selector
    path = dkim_keys.key_path(settings.data_dir, domain, selector)
    # Zone-file lines, unwrapped, so they can be pasted as they are.
    for name, kind, value in dkim_keys.dns_records(domain, selector, path, inbound_host=mx_host):
        shown = zone_txt(value) if kind == "TXT" else value
        click.echo(f"{name}.\t3600\tIN\t{kind}\t{shown}")
    if not path.exists():
        click.echo(f"no DKIM key yet: run `shoestring mail dkim init --domain {domain}`", err=True)


# RFC 1035 §2.3.1 (with RFC 1123's leading digits): letters, digits and inner hyphens.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
TXT_STRING_OCTETS = 255  # RFC 1035 §3.3.14: one character-string holds at most 255 octets


def _hostname(name: str, option: str) -> str:
    """`name` as DNS writes it (lower case, no trailing dot, A-labels), or a UsageError."""
    normal = name.strip().rstrip(".").lower()
    with contextlib.suppress(UnicodeError):  # not convertible: the label check says why
        normal = normal.encode("idna").decode("ascii")
    labels = normal.split(".")
    if len(normal) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise click.UsageError(
            f"{option} {name!r} is not a host name: letters, digits and hyphens in"
            " dot-separated labels, e.g. example.org"
        )
    return normal


def zone_txt(value: str) -> str:
    """A TXT value as zone-file character-strings of at most 255 octets: "..." "..."."""
    data = value.encode("ascii")
    chunks = [data[i : i + TXT_STRING_OCTETS] for i in range(0, len(data), TXT_STRING_OCTETS)]
    quoted = (c.decode().replace("\\", "\\\\").replace('"', '\\"') for c in chunks or [b""])
    return " ".join(f'"{chunk}"' for chunk in quoted)


@mail_group.command("check")
@project_option
@click.option("--domain", required=True, help="The domain whose records to look up.")
@click.option("--selector", default=None, help="DKIM selector [default: mail.dkim_selector].")
def mail_check(project_dir: Path, domain: str, selector: str | None) -> None:
    """Compare what DNS publishes for DOMAIN now with what it should.

    SPF and DMARC must be published (their policies are yours to choose);
    the DKIM record must carry the public key of this project's key.
    """
    domain = _hostname(domain, "--domain")
    settings = load_settings(project_dir)
    selector = selector or settings.mail.dkim_selector
    path = dkim_keys.key_path(settings.data_dir, domain, selector)
    problems = 0
    console = Console(highlight=False)
    for name, kind, expected in dkim_keys.dns_records(domain, selector, path, inbound_host=None):
        found, error = _published_txt(name)
        verdict, why = _compare(expected, found)
        problems += verdict != "ok"
        colour = "green" if verdict == "ok" else "red"
        console.print(f"[{colour}]{verdict}[/]  {kind} {name}{error}" + (f": {why}" if why else ""))
    if not path.exists():
        console.print(
            f"no DKIM key here for {domain}: `shoestring mail dkim init --domain {domain}`"
        )
    if problems:
        raise ShoestringError(
            f"{problems} record(s) missing, different or invalid: see `shoestring mail dns --domain {domain}`"
        )


def _published_txt(name: str) -> tuple[list[str], str]:
    """The TXT values published at `name`, and a note on why there are none."""
    import dns.exception
    import dns.resolver

    try:
        answers = dns.resolver.resolve(name, "TXT", lifetime=5)
    except dns.resolver.NXDOMAIN:
        return [], ""
    except dns.exception.DNSException as exc:
        return [], f" (DNS: {type(exc).__name__})"
    return ["".join(part.decode() for part in answer.strings) for answer in answers], ""


def _compare(expected: str, found: list[str]) -> tuple[str, str]:
    """ok, missing, different (a DKIM record whose key is not ours) or invalid, and why."""
    kind = expected.split(";")[0].split(" ")[0].lower()  # v=spf1, v=DKIM1, v=DMARC1
    if kind == "v=spf1":
        return _compare_spf(found)
    if kind == "v=dmarc1":
        return _compare_dmarc(found)
    return _compare_dkim(expected, found)


_SPF = re.compile(r"v=spf1(?: |$)", re.IGNORECASE)  # RFC 7208 §4.5: `v=spf1x` is none


def _compare_spf(found: list[str]) -> tuple[str, str]:
    records = [value for value in found if _SPF.match(value)]
    if not records:
        return "missing", ""
    if len(records) > 1:
        return (
            "invalid",
            f"{len(records)} SPF records: receivers take that as a permerror (RFC 7208 §4.5)",
        )
    return "ok", ""


def _compare_dmarc(found: list[str]) -> tuple[str, str]:
    # RFC 7489 §6.6.3: only records whose first tag is v=DMARC1 count, and more than one is none.
    records = [
        tags for tags in map(_tags, found) if tags and next(iter(tags.items())) == ("v", "DMARC1")
    ]
    if not records:
        return "missing", ""
    if len(records) > 1:
        return "invalid", f"{len(records)} DMARC records: receivers apply none (RFC 7489 §6.6.3)"
    policy = records[0].get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        return "invalid", f"p={policy!r} is not none, quarantine or reject (RFC 7489 §6.3)"
    return "ok", ""


def _compare_dkim(expected: str, found: list[str]) -> tuple[str, str]:
    ours = _tags(expected) or {}
    # RFC 6376 §3.6.1: v= is optional, but if there, the first tag and DKIM1.
    records = [
        tags for tags in map(_tags, found)
        if tags and ("v" not in tags or next(iter(tags.items())) == ("v", "DKIM1"))
    ]  # fmt: skip
    if not records:
        return "missing", ""
    matching = [tags for tags in records if "".join(tags.get("p", "").split()) == ours.get("p")]
    if not matching:
        return "different", ""
    key_type = ours.get("k", "rsa")
    if not any(tags.get("k", "rsa").lower() == key_type for tags in matching):
        shown = matching[0].get("k", "")
        return "invalid", f"k={shown} but the key is {key_type} (RFC 6376 §3.6.1)"
    return "ok", ""


_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _tags(record: str) -> dict[str, str] | None:
    """A tag=value list (RFC 6376 §3.2, RFC 7489 §6.4): whitespace around names and
    values allowed, a trailing `;` too; None when it is not one (or names a tag twice)."""
    tags: dict[str, str] = {}
    parts = record.split(";")
    if parts and not parts[-1].strip():
        parts.pop()
    for part in parts:
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or not _TAG_NAME.fullmatch(name) or name in tags:
            return None
        tags[name] = value.strip()
    return tags
