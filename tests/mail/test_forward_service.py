"""Forwarder in a running app, on both database backends, delivering to a real SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from shoestring import App
from shoestring.config import InboundSettings, JobsSettings, MailSettings
from shoestring.mail import InvalidMessage
from shoestring.mail import dkim as our_dkim
from shoestring.mail.inbound import Bounce, Forwarder, InboundMessage
from shoestring.mail.inbound import rewrite as fwd
from tests.backends import make_app, running
from tests.mail.conftest import Sink
from tests.mail.signatures import dkim_verifies
from tests.mail.test_forward import ORIGINAL, dsn, owners_reply

pytestmark = pytest.mark.anyio

DOMAIN = "othermail.example"
ALIAS = f"x7k2@{DOMAIN}"
OWNER = "ada.lovelace@owner.example"
OWNER_PASSES = {"spf": "pass", "spf_domain": "owner.example", "dkim": "none", "dmarc": "none"}


def forwarding_app(database_url: str, tmp_path: Path, sink: Sink) -> tuple[App, Forwarder, Path]:
    key = our_dkim.key_path(tmp_path / "data", DOMAIN, "mail")
    our_dkim.generate_key(key)
    app = make_app(
        database_url, tmp_path, jobs=JobsSettings(poll_interval=0.05),
        mail=MailSettings(
            transport=sink.url, sender=f"othermail <noreply@{DOMAIN}>", dkim_domain=DOMAIN,
            retry_backoff=0.05, inbound=InboundSettings(domains=[DOMAIN]),
        ),
    )  # fmt: skip
    app.mail  # noqa: B018 - as App.running does before starting services
    return app, Forwarder(app, domain=DOMAIN), key


def received(
    raw: bytes, *, recipient: str = ALIAS, mail_from: str = "bob@elsewhere.example",
    authentication: dict[str, str] | None = None, recipients: tuple[str, ...] = (),
    spool_id: str = "spool1",
) -> InboundMessage:  # fmt: skip
    return InboundMessage(
        id=spool_id, mail_from=mail_from, recipient=recipient,
        recipients=recipients or (recipient,), raw=raw, received_at=datetime.now(UTC),
        authentication=authentication or {},
    )  # fmt: skip


async def delivered(sink: Sink, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(sink.received) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert len(sink.received) >= count, "the mail did not arrive"
    await asyncio.sleep(0.2)  # and nothing more than that
    return sink.received


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def verifies(raw: bytes, key: Path) -> bool:
    return dkim_verifies(raw, key, DOMAIN)


async def test_a_forward_goes_out_from_our_domain_signed_with_a_verp_sender(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, forwarder, key = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        outbox_id = await forwarder.forward(received(ORIGINAL), to=OWNER)
        assert outbox_id is not None
        (mail,) = await delivered(sink)
        assert mail["to"] == [OWNER]
        verp = fwd.read_bounce_address(forwarder.key, mail["from"])
        assert mail["from"].endswith(f"@{DOMAIN}") and verp is not None and verp.kind == "forward"
        assert not verp.expired(time.time()) and verp.expired(time.time() + 7 * 86400 + 60)
        assert verifies(mail["data"], key)
        copy = parse(mail["data"])
        ra = copy["From"].addresses[0].addr_spec
        assert copy["From"].addresses[0].domain == DOMAIN
        assert copy["Message-ID"] == "<m2@elsewhere.example>"
        # the reverse alias is known, leads back to Bob, and bounces name it
        assert await forwarder.knows(ra) and await forwarder.knows(mail["from"])
        contact = await forwarder.contact(ra)
        assert contact is not None and contact.alias == ALIAS
        assert (contact.correspondent, contact.name) == ("bob@elsewhere.example", "Bob Example")
        assert verp.token == contact.token


async def test_a_retried_handler_forwards_once_and_loops_are_refused(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, forwarder, _ = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        assert await forwarder.forward(received(ORIGINAL), to=OWNER) is not None
        assert await forwarder.forward(received(ORIGINAL), to=OWNER) is None  # same spool id
        assert await forwarder.forward(received(ORIGINAL), to=f"other@{DOMAIN}") is None
        assert await forwarder.forward(received(ORIGINAL), to=f"x@{DOMAIN.upper()}.") is None
        looped = b"Received: from a by b\r\n" * (fwd.MAX_HOPS + 1) + ORIGINAL
        assert await forwarder.forward(received(looped, spool_id="s2"), to=OWNER) is None
        # the owner's "reply all" also reached the alias: the reply goes, no copy back
        ra = fwd.reverse_alias_address(fwd.reverse_alias_token(forwarder.key, ALIAS, "bob@elsewhere.example"), DOMAIN)  # fmt: skip
        both = received(ORIGINAL, spool_id="s3", recipients=(ra, ALIAS))
        assert await forwarder.forward(both, to=OWNER) is None
        assert len(await delivered(sink)) == 1


async def test_a_reply_from_the_owner_reaches_the_correspondent_from_the_alias(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, forwarder, key = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        await forwarder.forward(received(ORIGINAL), to=OWNER)
        copy = parse((await delivered(sink))[0]["data"])
        ra = copy["Reply-To"].addresses[0].addr_spec
        carol = copy["To"].addresses[1].addr_spec  # reply all: Carol's reverse alias

        reply = owners_reply()
        del reply["To"]
        reply["To"] = ra
        reply["Cc"] = f"{carol}, {ALIAS}"
        raw = reply.as_bytes(policy=email.policy.SMTP)
        message = received(raw, recipient=ra, mail_from=OWNER, authentication=OWNER_PASSES)
        contact = await forwarder.contact(ra)
        assert contact is not None
        assert await forwarder.reply(message, contact=contact, owner=OWNER) is not None
        assert await forwarder.reply(message, contact=contact, owner=OWNER) is None  # once
        mail = (await delivered(sink, 2))[1]
        # Bob answers the reply: Ada's client gets the ids it knows back
        hidden = parse(mail["data"])["Message-ID"]
        assert hidden.endswith(f"@{DOMAIN}>") and "owner.example" not in hidden
        answer = ORIGINAL.replace(b"<m1@othermail.example>", hidden.encode())
        await forwarder.forward(received(answer, spool_id="s2"), to=OWNER)
        threaded = parse((await delivered(sink, 3))[2]["data"])
        assert threaded["In-Reply-To"] == "<reply1@owner.example>"
    assert mail["to"] == ["bob@elsewhere.example"]
    verp = fwd.read_bounce_address(forwarder.key, mail["from"])
    assert verp is not None and verp.kind == "reply" and verp.token == contact.token
    assert verifies(mail["data"], key)
    sent = parse(mail["data"])
    assert sent["From"].addresses[0].addr_spec == ALIAS
    assert [a.addr_spec for a in sent["Cc"].addresses] == ["carol@third.example"]
    assert sent["In-Reply-To"] == "<m2@elsewhere.example>"
    assert OWNER.encode() not in mail["data"].lower()
    assert OWNER.encode() not in mail["from"].encode() + b"".join(a.encode() for a in mail["to"])


async def test_a_forged_reply_goes_nowhere(database_url: str, tmp_path: Path, sink: Sink) -> None:
    app, forwarder, _ = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        await forwarder.forward(received(ORIGINAL), to=OWNER)
        ra = parse((await delivered(sink))[0]["data"])["Reply-To"].addresses[0].addr_spec
        contact = await forwarder.contact(ra)
        assert contact is not None
        raw = owners_reply().as_bytes(policy=email.policy.SMTP)
        spf_failed = {"spf": "fail", "spf_domain": "owner.example", "dkim": "none"}
        forged = received(raw, recipient=ra, mail_from=OWNER, authentication=spf_failed)
        assert await forwarder.reply(forged, contact=contact, owner=OWNER) is None
        someone_else = received(raw, recipient=ra, authentication=OWNER_PASSES, spool_id="s2")
        assert await forwarder.reply(someone_else, contact=contact, owner="eve@owner.example") is None  # fmt: skip
        assert len(await delivered(sink)) == 1  # the forward only


async def test_bounces_name_the_alias_and_forged_ones_are_ignored(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, forwarder, _ = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        await forwarder.forward(received(ORIGINAL), to=OWNER)
        verp = (await delivered(sink))[0]["from"]
        report = dsn("failed", "5.1.1")
        bounce = await forwarder.bounce(received(report, recipient=verp, mail_from=""))
        assert bounce == Bounce(ALIAS, "forward", True, "5.1.1")
        delayed = received(dsn("delayed", "4.4.1"), recipient=verp, mail_from="")
        assert await forwarder.bounce(delayed) is None
        forged = verp.replace("bounce_f_", "bounce_r_")
        assert not await forwarder.knows(forged)
        assert await forwarder.bounce(received(report, recipient=forged, mail_from="")) is None
        read = fwd.read_bounce_address(forwarder.key, verp)
        assert read is not None
        expired = fwd.bounce_address(
            forwarder.key, domain=DOMAIN, kind="forward", token=read.token,
            expires=int(time.time()) - 1,
        )  # fmt: skip
        assert not await forwarder.knows(expired)
        assert not await forwarder.knows(f"ra_aaaaaaaaaaaaaaaa@{DOMAIN}")


async def test_forgetting_an_alias_forgets_its_correspondents(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, forwarder, _ = forwarding_app(database_url, tmp_path, sink)
    async with running(app):
        await forwarder.forward(received(ORIGINAL), to=OWNER)
        copy = parse((await delivered(sink))[0]["data"])
        ra = copy["From"].addresses[0].addr_spec
        verp = sink.received[0]["from"]
        # stored encrypted: no correspondent address in the database
        dump = "\n".join(str(row) for row in await app.db.fetchall("SELECT doc FROM tbl_forwarding_contacts"))  # fmt: skip
        assert "elsewhere.example" not in dump and "third.example" not in dump
        assert ALIAS in dump
        assert await forwarder.forget(ALIAS) == 3  # Bob, Carol, Dave
        assert not await forwarder.knows(ra) and await forwarder.contact(ra) is None
        report = received(dsn("failed", "5.1.1"), recipient=verp, mail_from="")
        assert await forwarder.bounce(report) is None  # nothing left to count it against


# -- the outbox's send_message ------------------------------------------------------


async def test_send_message_sends_a_whole_message_with_its_envelope_sender(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, _, key = forwarding_app(database_url, tmp_path, sink)
    message = parse(ORIGINAL)
    message["Bcc"] = "hidden@elsewhere.example"
    async with running(app):
        await app.mail.send_message(message, to=[OWNER], envelope_from=f"bounces@{DOMAIN}")
        await app.mail.send_message(parse(ORIGINAL), to=["carol@third.example"])
        by_recipient = {mail["to"][0]: mail for mail in await delivered(sink, 2)}
        first, second = by_recipient[OWNER], by_recipient["carol@third.example"]  # any order
    assert (first["from"], first["to"]) == (f"bounces@{DOMAIN}", [OWNER])
    assert second["from"] == "bob@elsewhere.example"  # by default, the message's From
    assert b"Bcc" not in first["data"] and b"hidden@" not in first["data"]
    assert parse(first["data"])["Message-ID"] == "<m2@elsewhere.example>"
    assert "Bcc" in message  # the caller's message is left alone
    assert verifies(first["data"], key)


async def test_send_message_refuses_what_send_refuses(
    database_url: str, tmp_path: Path, sink: Sink
) -> None:
    app, _, _ = forwarding_app(database_url, tmp_path, sink)
    injected = EmailMessage(policy=email.policy.compat32)
    injected["From"] = f"a@{DOMAIN}"
    injected["Subject"] = "hi\r\nBcc: eve@evil.example"
    injected.set_payload("x")
    async with running(app):
        with pytest.raises(InvalidMessage, match="line break"):
            await app.mail.send_message(injected, to=[OWNER])  # type: ignore[arg-type]
        with pytest.raises(InvalidMessage, match="to"):
            await app.mail.send_message(parse(ORIGINAL), to=["not an address"])
        with pytest.raises(InvalidMessage, match="envelope_from"):
            await app.mail.send_message(parse(ORIGINAL), to=[OWNER], envelope_from="a\r\nb@c")
        with pytest.raises(InvalidMessage, match="at least one"):
            await app.mail.send_message(parse(ORIGINAL), to=[])
        no_from = parse(b"Subject: x\r\n\r\nbody\r\n")
        with pytest.raises(InvalidMessage, match="From"):
            await app.mail.send_message(no_from, to=[OWNER])
        rows = await app.db.fetchall("SELECT id FROM shoestring_outbox")
    assert rows == []
