"""Received messages whose headers could fool the checks, or the checks themselves.

DMARC judges the domain of a message's From address; a message must not get
past it by hiding that address from the checks while a reader still sees it,
nor by making the checks fail. Spoken to with raw SMTP (`converse`).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.mail.dns import LoopbackDNS
from tests.mail.mailroom import DOMAIN, Mailroom, converse, note

pytestmark = pytest.mark.anyio

TO = f"notes@{DOMAIN}"


async def send_data(mailroom: Mailroom, data: str, *, mail_from: str | None = None) -> str:
    """The reply to DATA for `data` (headers and body, CRLF lines, without the final dot)."""
    replies = await asyncio.to_thread(
        converse, mailroom.port, [f"RCPT TO:<{TO}>", "DATA"],
        data=data + "\r\n.\r\n",
        **({"mail_from": mail_from} if mail_from else {}),
    )  # fmt: skip
    return replies[-1]


@pytest.mark.parametrize(
    "head",
    [
        "From: =?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?=",  # ceo@bank.example, encoded
        "From: ceo@bank.example;x@evil.example",
        "From: ceo@bank.example, x@evil.example",
        "From: ceo@bank.example\r\nFrom: x@evil.example",
        "To: notes@in.example",  # no From at all
        " From: ceo@bank.example",  # not a header field: it would fold into ours
    ],
)
async def test_a_from_the_checks_cannot_judge_is_refused_before_spooling(
    mailroom: Mailroom, default_dns: LoopbackDNS, head: str
) -> None:
    default_dns.records[("_dmarc.bank.example", "TXT")] = ['"v=DMARC1; p=reject"']
    default_dns.records[("bank.example", "TXT")] = ['"v=spf1 -all"']
    reply = await send_data(mailroom, f"{head}\r\nSubject: pay now\r\n\r\nhi")
    assert reply.startswith("550 5.7.1") and "one From" in reply
    assert await mailroom.spooled() == []


async def test_a_plain_from_of_a_domain_that_rejects_is_refused(
    mailroom: Mailroom, default_dns: LoopbackDNS
) -> None:
    default_dns.records[("_dmarc.bank.example", "TXT")] = ['"v=DMARC1; p=reject"']
    default_dns.records[("bank.example", "TXT")] = ['"v=spf1 -all"']
    reply = await send_data(mailroom, "From: ceo@bank.example\r\nSubject: pay now\r\n\r\nhi")
    assert reply.startswith("550 5.7.1") and "DMARC" in reply


async def test_headers_the_checks_cannot_read_get_a_permanent_answer_not_451(
    mailroom: Mailroom, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await send_data(mailroom, "Subject : obsolete\r\nFrom: a@elsewhere.example\r\n\r\nhi")
    assert reply.startswith("550 5.6.0")  # the sender's server tells its user, no retrying
    assert await mailroom.spooled() == []
    assert "Traceback" not in caplog.text and "elsewhere.example" not in caplog.text


async def test_an_international_sender_is_received(mailroom: Mailroom) -> None:
    reply = await send_data(
        mailroom, "From: zoë@sénder.example\r\nSubject: hé\r\n\r\nhi",
        mail_from="MAIL FROM:<zoë@sénder.example> SMTPUTF8",
    )  # fmt: skip
    assert reply.startswith("250"), reply
    await mailroom.until_received(1)
    assert mailroom.received[0].mail_from == "zoë@sénder.example"
    assert mailroom.received[0].authentication["spf_domain"] == "xn--snder-bsa.example"


async def test_a_helo_name_that_is_not_ascii_is_a_syntax_error(mailroom: Mailroom) -> None:
    replies = await asyncio.to_thread(converse, mailroom.port, ["EHLO héllo.example"])
    assert replies[-1].startswith("501 5.5.4")


@pytest.mark.parametrize(
    "forged",
    ["(c) mx.in.example; dkim=pass", "mx.in.example(ours); dkim=pass", "(a (b)) MX.in.example ; x"],
)
async def test_forged_results_naming_us_behind_comments_are_removed(
    mailroom: Mailroom, forged: str
) -> None:
    message = note()
    message["Authentication-Results"] = forged
    await mailroom.send(TO, message=message)
    await mailroom.until_received(1)
    results = mailroom.received[0].parsed.get_all("Authentication-Results")
    assert len(results) == 1 and "dkim=pass" not in results[0]  # ours alone


async def test_a_reused_message_id_from_another_sender_is_not_a_duplicate(
    mailroom: Mailroom,
) -> None:
    message = "From: {0}\r\nMessage-ID: <alert-1@monitor.example>\r\nSubject: x\r\n\r\n{1}"
    first = await send_data(mailroom, message.format("a@elsewhere.example", "disk full"))
    again = await send_data(mailroom, message.format("a@elsewhere.example", "disk full"))
    other = await send_data(
        mailroom, message.format("b@elsewhere.example", "cpu hot"),
        mail_from="MAIL FROM:<b@elsewhere.example>",
    )  # fmt: skip
    assert "queued as" in first and "already queued" in again and "queued as" in other
    await mailroom.until_received(2)
    assert sorted(m.text.strip() for m in mailroom.received if m.text) == ["cpu hot", "disk full"]


async def test_processed_messages_are_forgotten_after_the_retry_window(
    mailroom: Mailroom,
) -> None:
    six_days_ago = time.time() - 6 * 86400
    await mailroom.app.db.database.write(
        "INSERT INTO shoestring_inbound (id, dedupe, mail_from, recipients, raw, auth,"
        " received_at, state) VALUES ('old', 'old-key', '', '[]', NULL, '{}', ?, 'processed')",
        [six_days_ago],
    )
    await mailroom.send(TO)
    await mailroom.until_received(1)
    for _ in range(50):
        ids = [row[0] for row in await mailroom.spooled()]
        if "old" not in ids:
            break
        await asyncio.sleep(0.02)
    assert "old" not in ids and len(ids) == 1


async def test_our_verdict_then_our_trace_head_the_message(mailroom: Mailroom) -> None:
    await mailroom.send(TO)
    await mailroom.until_received(1)
    raw = mailroom.received[0].raw
    first, second = raw.split(b"\r\n")[0], raw.split(b"\r\n")[1]
    assert first.startswith(b"Authentication-Results: mx.in.example;")
    assert second.startswith(b"Received: from ") and b"[127.0.0.1]" in second
    assert b"by mx.in.example with ESMTP;" in raw.split(b"\r\n\r\n")[0]
