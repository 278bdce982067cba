"""The receiving SMTP server, spoken to by smtplib and raw sockets: relay rules, limits, spool."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from pathlib import Path

import pytest

from shoestring.mail.inbound import InboundMessage, server
from shoestring.mail.inbound.addresses import Refused
from tests.mail.dns import LoopbackDNS
from tests.mail.mailroom import DOMAIN, Mailroom, converse, note, open_mailroom

pytestmark = pytest.mark.anyio


async def test_a_message_is_spooled_then_handled_and_forgotten(mailroom: Mailroom) -> None:
    message = note("groceries")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="list.pdf")
    assert await mailroom.send(f"notes@{DOMAIN}", "Other@IN.example", message=message) == {}
    await mailroom.until_received(2)
    first = mailroom.received[0]
    assert sorted(m.recipient for m in mailroom.received) == [f"Other@{DOMAIN}", f"notes@{DOMAIN}"]
    assert first.mail_from == "sender@elsewhere.example"
    assert first.subject == "groceries" and first.text == "the body\n"
    assert [(a.filename, a.content_type, a.data) for a in first.attachments] == [
        ("list.pdf", "application/pdf", b"%PDF-1.4")
    ]
    await asyncio.sleep(0.1)
    assert [row[1:] for row in await mailroom.spooled()] == [("processed", True)]  # body deleted


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("user@elsewhere.example", 550),  # not our domain: never relay
        ("user%elsewhere.example@in.example", 553),  # percent hack
        ("elsewhere.example!user@in.example", 553),  # bang path
        ('"user@elsewhere.example"@in.example', 553),  # quoted local part
        ("user@[127.0.0.1]", 553),  # address literal
        ("gone@in.example", 550),  # our domain, no such mailbox
        ("user@in.example.elsewhere.example", 550),  # a domain that merely starts like ours
    ],
)
async def test_relay_tricks_and_unknown_mailboxes_are_refused_at_rcpt(
    mailroom: Mailroom, address: str, code: int
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await mailroom.send(address)
    assert refused.value.recipients[address][0] == code
    assert await mailroom.spooled() == []


@pytest.mark.parametrize(
    "path",
    [
        f"<@{DOMAIN}:user@elsewhere.example>",  # a source route
        f"<,@elsewhere.example:notes@{DOMAIN}>",  # the same, with an empty first hop
        f"<(c)@{DOMAIN}:notes@{DOMAIN}>",  # a comment in front
        f'<"notes"@{DOMAIN}>',  # quoted: aiosmtpd drops the quotes before our checks
        f"<notes @{DOMAIN}>",  # a space aiosmtpd's parser would skip
        f"<notes(comment)@{DOMAIN}>",
    ],
)
async def test_paths_that_only_parse_leniently_are_refused(mailroom: Mailroom, path: str) -> None:
    replies = await asyncio.to_thread(converse, mailroom.port, [f"RCPT TO:{path}"])
    assert replies[-1].startswith("553 5.1.3")


async def test_postmaster_without_a_domain_is_accepted(mailroom: Mailroom) -> None:
    # RFC 5321 §4.5.1: `RCPT TO:<Postmaster>` MUST be accepted; it is our first domain's.
    replies = await asyncio.to_thread(
        converse, mailroom.port, ["RCPT TO:<Postmaster>", "DATA"],
        data="From: s@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n.\r\n",
    )  # fmt: skip
    assert replies[-3].startswith("250") and replies[-1].startswith("250 2.0.0")
    await mailroom.until_received(1)
    assert mailroom.received[0].recipient == f"postmaster@{DOMAIN}"


@pytest.mark.parametrize("sender", ["a@[127.0.0.1]", "a@[IPv6:::1]"])
async def test_a_sender_at_an_address_literal_is_received(mailroom: Mailroom, sender: str) -> None:
    # RFC 5321 §4.1.2: a reverse-path may end in an address literal; EHLO may be one too.
    data = f"From: {sender}\r\nSubject: literal\r\n\r\nbody\r\n.\r\n"
    replies = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"],
        mail_from=f"MAIL FROM:<{sender}>", data=data, helo="EHLO [127.0.0.1]",
    )  # fmt: skip
    assert replies[-1].startswith("250 2.0.0 Ok: queued")
    await mailroom.until_received(1)
    assert mailroom.received[0].mail_from == sender
    assert mailroom.received[0].authentication["spf"] == "none"


@pytest.mark.parametrize("control", ["\x01", "\x7f", "\u0085", "\t"])
async def test_control_characters_in_the_sender_are_refused_at_mail(
    mailroom: Mailroom, control: str
) -> None:
    replies = await asyncio.to_thread(
        converse, mailroom.port, [], mail_from=f"MAIL FROM:<a{control}b@elsewhere.example>"
    )
    assert replies[-1].startswith("553 5.1.7")


async def test_full_mailboxes_and_too_many_recipients_are_deferred(mailroom: Mailroom) -> None:
    mailroom.full.add(f"full@{DOMAIN}")
    refused = await mailroom.send(f"full@{DOMAIN}", f"a@{DOMAIN}")
    assert refused == {f"full@{DOMAIN}": (452, b"4.2.2 Mailbox full; try again later")}
    replies = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<r{n}@{DOMAIN}>" for n in range(4)]
    )
    assert [r[:3] for r in replies[-4:]] == ["250", "250", "250", "452"]


async def test_an_app_error_at_rcpt_is_a_temporary_failure_without_details(
    mailroom: Mailroom,
) -> None:
    refused = await mailroom.send(f"broken@{DOMAIN}", f"fine@{DOMAIN}")
    assert refused == {
        f"broken@{DOMAIN}": (451, b"4.3.0 Temporary failure on our side; try again later")
    }
    await mailroom.until_received(1)  # the other recipient still got it


async def test_oversized_messages_are_refused_before_they_are_stored(mailroom: Mailroom) -> None:
    declared = await asyncio.to_thread(
        converse, mailroom.port, [], mail_from="MAIL FROM:<s@elsewhere.example> SIZE=999999"
    )
    assert declared[-1].startswith("552")
    # a client that does not declare the size is stopped at DATA
    body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 100 + ".\r\n"
    undeclared = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"], data=body
    )
    assert undeclared[-1].startswith("552")
    assert await mailroom.spooled() == []


async def test_smuggled_end_of_data_is_refused(mailroom: Mailroom) -> None:
    smuggled = (
        "Subject: hi\r\n\r\nfirst\n.\nMAIL FROM:<evil@elsewhere.example>\r\n"
        "RCPT TO:<victim@elsewhere.example>\r\nDATA\r\nsmuggled\r\n.\r\n"
    )
    replies = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"], data=smuggled
    )
    assert replies[-1].startswith("550 5.6.0")
    assert await mailroom.spooled() == []


@pytest.mark.parametrize(
    "data",
    [
        "From: s@elsewhere.example\r\nSubject: a\x00b\r\n\r\nbody\r\n.\r\n",
        "From: s@elsewhere.example\r\nSubject: hi\r\n\r\nbo\x00dy\r\n.\r\n",
    ],
)
async def test_nul_characters_are_refused(mailroom: Mailroom, data: str) -> None:
    replies = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<notes@{DOMAIN}>", "DATA"], data=data
    )
    assert replies[-1].startswith("550 5.6.0")
    assert await mailroom.spooled() == []


async def test_headers_claiming_to_be_ours_are_removed(mailroom: Mailroom) -> None:
    message = note(X_Shoestring_Verified="yes")
    message["Authentication-Results"] = "mx.in.example; dmarc=pass header.from=bank.example"
    message["Authentication-Results"] = "mx.other.example; spf=fail"
    await mailroom.send(f"notes@{DOMAIN}", message=message)
    await mailroom.until_received(1)
    kept = mailroom.received[0].parsed
    assert kept["X-Shoestring-Verified"] is None
    results = kept.get_all("Authentication-Results")
    assert results[0].startswith("mx.in.example; spf=")  # ours, first
    assert results[1:] == ["mx.other.example; spf=fail"]  # theirs, kept; the forgery, gone
    assert "bank.example" not in str(results)
    assert kept["Subject"] == "hello"


async def test_a_resent_message_is_handled_once(mailroom: Mailroom) -> None:
    message = note(Message_ID="<once@elsewhere.example>")
    await mailroom.send(f"notes@{DOMAIN}", message=message)
    await mailroom.send(f"notes@{DOMAIN}", message=message)  # the client never saw our 250
    await mailroom.until_received(1)
    await asyncio.sleep(0.3)
    assert len(mailroom.received) == 1


async def test_messages_differing_only_in_a_header_are_both_handled(mailroom: Mailroom) -> None:
    # No Message-ID, same envelope and body: only the Subject tells them apart.
    await mailroom.send(f"notes@{DOMAIN}", message=note("first"))
    await mailroom.send(f"notes@{DOMAIN}", message=note("second"))
    await mailroom.until_received(2)
    assert sorted(m.subject for m in mailroom.received) == ["first", "second"]


async def test_a_failing_handler_is_retried(mailroom: Mailroom) -> None:
    mailroom.failures_left = 1
    await mailroom.send(f"notes@{DOMAIN}")
    await mailroom.until_received(1)
    assert mailroom.failures_left == 0


async def test_a_recipient_whose_handler_fails_holds_back_no_other_and_is_given_up(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    async with open_mailroom(database_url, tmp_path, retries=2) as room:
        room.failing.add(f"broke@{DOMAIN}")
        await room.send(f"broke@{DOMAIN}", f"notes@{DOMAIN}", f"other@{DOMAIN}")
        await room.until_received(2)  # the recipients after the failing one
        for _ in range(300):
            rows = await room.app.db.fetchall(
                "SELECT state, raw, last_error FROM shoestring_inbound"
            )
            if rows[0][0] != "received":
                break
            await asyncio.sleep(0.02)
    assert sorted(m.recipient for m in room.received) == [f"notes@{DOMAIN}", f"other@{DOMAIN}"]
    ((state, raw, error),) = rows
    assert (state, raw) == ("failed", None)  # finished, and the body forgotten
    assert error == "the handler failed for 1 of 3 recipients after 3 attempts (RuntimeError)"


async def test_connections_and_errors_are_limited(mailroom: Mailroom) -> None:
    def open_connections() -> list[str]:
        sockets = [socket.create_connection(("127.0.0.1", mailroom.port)) for _ in range(4)]
        try:
            return [s.recv(200).decode() for s in sockets]
        finally:
            for s in sockets:
                s.close()

    greetings = await asyncio.to_thread(open_connections)
    assert [g[:3] for g in greetings] == ["220", "220", "220", "421"]
    replies = await asyncio.to_thread(converse, mailroom.port, ["BOGUS"] * 5)
    assert any(r.startswith("421 4.7.0 Too many errors") for r in replies)
    # Harmless commands, over and over, to hold the connection: cut off too.
    replies = await asyncio.to_thread(converse, mailroom.port, ["NOOP"] * 150)
    assert replies[-1] == "421 4.7.0 NOOP sent too many times"
    assert len(replies) < 110


async def test_connections_beyond_the_overall_limit_are_told_to_come_back(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    async with open_mailroom(database_url, tmp_path, max_connections=4) as room:
        # 127.0.0.2 to .6: five addresses, each under its own limit of 3
        def open_connections() -> list[str]:
            sockets = [
                socket.create_connection(
                    ("127.0.0.1", room.port), source_address=(f"127.0.0.{n}", 0)
                )
                for n in range(2, 7)
            ]
            try:
                return [s.recv(200).decode() for s in sockets]
            finally:
                for s in sockets:
                    s.close()

        greetings = await asyncio.to_thread(open_connections)
        assert [g[:9] for g in greetings] == ["220 mx.in"] * 4 + ["421 4.3.2"]
        # once those are gone (the server notices soon after), there is room again
        for _ in range(100):
            try:
                assert await room.send(f"notes@{DOMAIN}") == {}
                break
            except smtplib.SMTPConnectError:
                await asyncio.sleep(0.05)
        await room.until_received(1)


def _slow_message(port: int, *, pauses: int) -> bytes:
    """A message whose body comes a line at a time, then what the server said at its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"EHLO client.example\r\nMAIL FROM:<s@elsewhere.example>\r\n"
            + f"RCPT TO:<notes@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        seen = b""
        while b"\r\n354" not in seen:
            seen += sock.recv(4096)
        sock.sendall(b"From: s@elsewhere.example\r\nSubject: slow\r\n\r\n")
        for _ in range(pauses):
            time.sleep(0.3)
            sock.sendall(b"still coming\r\n")
        sock.sendall(b".\r\n")
        return sock.recv(4096)


async def test_a_message_still_arriving_is_not_cut_off_but_an_idle_one_is(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 1.0)  # 5 minutes in life
    async with open_mailroom(database_url, tmp_path) as room:
        # Longer than the timeout in all, never idle that long: received.
        reply = await asyncio.to_thread(_slow_message, room.port, pauses=10)
        assert reply.startswith(b"250 2.0.0 Ok: queued")
        await room.until_received(1)
        # Silent mid-message for longer than the timeout: the connection is closed.
        assert await asyncio.to_thread(_idle_message, room.port) == b""


def _idle_message(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"EHLO client.example\r\nMAIL FROM:<s@elsewhere.example>\r\n"
            + f"RCPT TO:<notes@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        seen = b""
        while b"\r\n354" not in seen:
            seen += sock.recv(4096)
        sock.sendall(b"From: s@elsewhere.example\r\nSubject: idle\r\n\r\n")
        return sock.recv(4096)  # b"": the server closed the connection


def test_hostile_headers_never_break_a_handler() -> None:
    from datetime import UTC, datetime

    from shoestring.mail.inbound import InboundMessage

    raw = (
        b"From: =?utf-8?b?QWRhDQpCY2M6IGV2ZUBleC5jb20=?= <ada@example.org>\r\n"  # "Ada\r\nBcc: ..."
        b"Subject: =?utf-8?q?hi=0D=0ABcc=3A_eve@example.com?=\r\n\r\nbody\r\n"
    )
    message = InboundMessage(
        id="1", mail_from="", recipient="r@in.example", recipients=("r@in.example",),
        raw=raw, received_at=datetime.now(UTC),
    )  # fmt: skip
    assert message.subject == "hi  Bcc: eve@example.com"  # one line: safe to reuse in a header
    assert "\n" not in message.from_ and "ada@example.org" in message.from_
    assert message.message_id == ""


async def test_a_screen_refuses_at_data_with_its_reason_on_one_line(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    seen: list[InboundMessage] = []

    async def screen(message: InboundMessage) -> str | None:
        seen.append(message)
        if message.header("Subject") == "boom":
            raise RuntimeError("the screen's lookup failed")
        if message.header("Subject") == "spam":
            return "Not wanted here\r\n250 fake reply"
        return None

    async with open_mailroom(database_url, tmp_path, screen=screen) as room:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await room.send(f"notes@{DOMAIN}", message=note("spam"))
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error == b"5.7.1 Not wanted here  250 fake reply"
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            await room.send(f"notes@{DOMAIN}", message=note("boom"))
        assert deferred.value.smtp_code == 451 and b"lookup" not in deferred.value.smtp_error
        assert await room.spooled() == []  # neither was stored
        assert await room.send(f"notes@{DOMAIN}", message=note("fine")) == {}
        await room.until_received(1)
    assert seen[0].id == "" and seen[0].recipient == f"notes@{DOMAIN}"
    assert seen[0].authentication["spf"]  # checked before the screen ran


async def test_an_address_trying_out_recipients_learns_nothing_more(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    async with open_mailroom(database_url, tmp_path, unknown_recipients_per_hour=3) as room:
        probes = [f"RCPT TO:<gone{n}@{DOMAIN}>" for n in range(3)]
        replies = await asyncio.to_thread(converse, room.port, probes)
        assert [r[:9] for r in replies[-3:]] == ["550 5.1.1"] * 3
        # From the same address, on a new connection: even a real mailbox says nothing.
        later = await asyncio.to_thread(
            converse, room.port, [f"RCPT TO:<notes@{DOMAIN}>", f"RCPT TO:<gone9@{DOMAIN}>"]
        )
        assert [r[:9] for r in later[-2:]] == ["450 4.7.1"] * 2


async def test_ipv6_addresses_of_one_network_guess_recipients_together(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    async with open_mailroom(database_url, tmp_path, unknown_recipients_per_hour=2) as room:
        inbound = room.app.inbound
        for n, ip in enumerate(["2001:db8::1", "2001:db8::2"]):  # a new address for each guess
            with pytest.raises(Refused) as unknown:
                await inbound.accept(f"gone{n}@{DOMAIN}", ip)
            assert unknown.value.reply.startswith("550 5.1.1")
        with pytest.raises(Refused) as refused:
            await inbound.accept(f"notes@{DOMAIN}", "2001:db8::3")
        assert refused.value.reply.startswith("450 4.7.1")
        # another network is not held back by this one's guessing
        assert await inbound.accept(f"notes@{DOMAIN}", "2001:db8:0:1::1") == f"notes@{DOMAIN}"
