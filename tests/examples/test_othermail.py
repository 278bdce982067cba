"""examples/othermail as a running `shoestring run`, driven over HTTP and by swaks over SMTP."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import SHOESTRING
from tests.examples.othermail import (
    BOB,
    DOMAIN,
    OWNER,
    Othermail,
    accepted,
    parse,
    refused_at_rcpt,
)
from tests.mail.conftest import Sink
from tests.mail.dns import LoopbackDNS
from tests.mail.signatures import dkim_verifies

pytestmark = pytest.mark.e2e

SHOP = f"shop@{DOMAIN}"


def bobs_mail(to: str = SHOP, message_id: str = "<order-1@elsewhere.example>") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Bob Example <{BOB}>"
    message["To"] = to
    message["Subject"] = "Your order"
    message["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = message_id
    message["References"] = "<order-0@elsewhere.example>"
    message.set_content("Your bike is ready.\n")
    message.add_attachment(
        b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    return message


def verifies(raw: bytes, key: Path) -> bool:
    return dkim_verifies(raw, key, DOMAIN)


def test_mail_to_a_live_alias_arrives_from_our_domain_signed_and_threaded(
    tmp_path: Path, sink: Sink
) -> None:
    othermail = Othermail(tmp_path, sink=sink, dkim=True)
    try:
        token = othermail.sign_up()
        othermail.create(token, local_part="shop", note="the bike shop")
        assert accepted(othermail.swaks(to=SHOP, message=bobs_mail()))
        _, forwarded = othermail.delivered(2)  # the sign-up code, then the forward
        assert othermail.alias(token, SHOP)["forwarded"] == 1
    finally:
        othermail.stop()
    assert forwarded["to"] == [OWNER]
    assert re.fullmatch(rf"bounce_f_[a-z2-7_]+@{re.escape(DOMAIN)}", forwarded["from"])
    assert verifies(forwarded["data"], othermail.dkim_key)
    copy = parse(forwarded["data"])
    sender = copy["From"].addresses[0]
    assert sender.domain == DOMAIN and re.fullmatch(r"ra_[a-z2-7]{16}", sender.username)
    assert sender.display_name == "Bob Example - bob at elsewhere.example"
    assert copy["Reply-To"].addresses[0].addr_spec == sender.addr_spec
    assert copy["X-Original-From"] == f"Bob Example <{BOB}>"
    assert [a.addr_spec for a in copy["To"].addresses] == [SHOP]
    assert copy["Message-ID"] == "<order-1@elsewhere.example>"
    assert copy["References"] == "<order-0@elsewhere.example>"
    assert "Authentication-Results" not in copy  # our own verdict stays with us
    (attachment,) = copy.iter_attachments()
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content() == b"%PDF-1.4 invoice"
    body = copy.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "Your bike is ready.\n"


def test_mail_acknowledged_right_before_a_kill_9_is_forwarded_after_restart(
    tmp_path: Path, sink: Sink
) -> None:
    othermail = Othermail(tmp_path, sink=sink, dkim=True)
    token = othermail.sign_up()
    othermail.create(token, local_part="shop")
    othermail.stop()
    # Without a job worker, the 250 can only stand for the message in the spool.
    othermail.start(SHOESTRING_JOBS__WORKER="false")
    try:
        assert accepted(othermail.swaks(to=SHOP, message=bobs_mail()))
    finally:
        killed_log = othermail.kill()
    assert len(sink.received) == 1  # the sign-up code only: nothing forwarded yet

    othermail.start()
    try:
        _, forwarded = othermail.delivered(2)
        assert othermail.alias(token, SHOP)["forwarded"] == 1
    finally:
        log = othermail.stop()
    assert len(sink.received) == 2  # forwarded once, not once per run
    assert forwarded["to"] == [OWNER]
    assert verifies(forwarded["data"], othermail.dkim_key)
    copy = parse(forwarded["data"])
    assert copy["From"].addresses[0].domain == DOMAIN
    assert copy["Message-ID"] == "<order-1@elsewhere.example>"
    for text in (killed_log, log):
        assert OWNER not in text and BOB not in text


def test_unknown_paused_expired_and_deleted_aliases_are_refused_at_rcpt(
    tmp_path: Path, sink: Sink
) -> None:
    othermail = Othermail(
        tmp_path, sink=sink, OTHERMAIL_MIN_EXPIRY="1", OTHERMAIL_SWEEP_SECONDS="1"
    )
    try:
        token = othermail.sign_up()
        othermail.create(token, local_part="shop")
        assert refused_at_rcpt(othermail.swaks(to=f"nobody@{DOMAIN}"))
        assert refused_at_rcpt(othermail.swaks(to=f"ra_aaaaaaaaaaaaaaaa@{DOMAIN}"))

        paused = othermail.call("PATCH", f"/api/aliases/{SHOP}", token, paused=True)
        assert (paused.status_code, paused.json()["state"]) == (200, "paused")
        assert refused_at_rcpt(othermail.swaks(to=SHOP))
        assert othermail.alias(token, SHOP)["blocked"] == 1
        othermail.call("PATCH", f"/api/aliases/{SHOP}", token, paused=False)
        assert accepted(othermail.swaks(to=SHOP))

        # an expiring alias: live, then refused; the sweep forgets its correspondents
        brief = othermail.create(token, expires_in=2)
        assert brief["state"] == "active" and brief["expires"] > time.time()
        assert accepted(othermail.swaks(to=brief["address"], message=bobs_mail(brief["address"])))
        (copy,) = [m for m in map(parse, (r["data"] for r in othermail.delivered(3)))
                   if brief["address"] in str(m["To"])]  # fmt: skip
        reverse_alias = copy["Reply-To"].addresses[0].addr_spec
        time.sleep(3)
        assert refused_at_rcpt(othermail.swaks(to=brief["address"]))
        assert othermail.alias(token, brief["address"])["state"] == "expired"
        assert refused_at_rcpt(othermail.swaks(to=reverse_alias))

        gone = othermail.call("DELETE", f"/api/aliases/{SHOP}", token)
        assert (gone.status_code, gone.json()) == (200, {"status": "deleted"})
        assert refused_at_rcpt(othermail.swaks(to=SHOP))
        assert SHOP not in [a["address"] for a in othermail.call("GET", "/api/aliases", token).json()["aliases"]]  # fmt: skip
        # never handed out again, to anyone
        other = othermail.sign_up("grace@owner.example")
        taken = othermail.call("POST", "/api/aliases", other, local_part="shop")
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "alias_taken")
        # and nobody else can touch someone's alias
        theirs = othermail.call("PATCH", f"/api/aliases/{brief['address']}", other, paused=True)
        assert (theirs.status_code, theirs.json()["error"]["code"]) == (404, "no_such_alias")
    finally:
        othermail.stop()


def test_a_reply_leaves_from_the_alias_and_a_forged_one_is_refused(
    tmp_path: Path, sink: Sink, zone: LoopbackDNS
) -> None:
    # owner.example's mail comes from 127.0.0.1 only; 127.0.0.2 is a forger
    zone.records[("owner.example", "TXT")] = ['"v=spf1 ip4:127.0.0.1 -all"']
    othermail = Othermail(tmp_path, sink=sink, zone=zone, dkim=True)
    try:
        token = othermail.sign_up()
        othermail.create(token, local_part="shop")
        assert accepted(othermail.swaks(to=SHOP, message=bobs_mail()))
        forwarded = parse(othermail.delivered(2)[1]["data"])
        reverse_alias = forwarded["Reply-To"].addresses[0].addr_spec

        reply = owners_reply(reverse_alias)
        assert accepted(othermail.swaks(to=reverse_alias, mail_from=OWNER, message=reply))
        sent = othermail.delivered(3)[2]

        forged = owners_reply(reverse_alias, "<forged@owner.example>")
        forged.replace_header("Subject", "Re: Your order (send the bike to my new address)")
        refused = othermail.swaks(
            to=reverse_alias, mail_from=OWNER, message=forged, local="127.0.0.2"
        )
        # Refused at DATA: the forger's own server tells the forger; we send no bounce.
        assert "550 5.7.1 Rejected: the sender is not authorized" in refused.stdout
        assert othermail.alias(token, SHOP)["blocked"] == 1
        time.sleep(0.5)
        assert len(sink.received) == 3  # the forged reply went nowhere
    finally:
        log = othermail.stop()
    assert sent["to"] == [BOB]
    assert re.fullmatch(rf"bounce_r_[a-z2-7_]+@{re.escape(DOMAIN)}", sent["from"])
    assert verifies(sent["data"], othermail.dkim_key)
    answer = parse(sent["data"])
    assert answer["From"].addresses[0].addr_spec == SHOP
    assert [a.addr_spec for a in answer["To"].addresses] == [BOB]
    assert answer["In-Reply-To"] == "<order-1@elsewhere.example>"
    text = answer.get_body(("plain",))
    assert text is not None and f"Ada, {SHOP}" in text.get_content()
    # not even the owner's domain: the reply's Message-ID is sealed into one of ours
    assert b"owner.example" not in sent["data"].lower()
    assert answer["Message-ID"].endswith(f"@{DOMAIN}>")
    # nothing personal kept or logged (the inbound spool is shoestring's own, checked there)
    with sqlite3.connect(othermail.project / "data" / "shoestring.db") as database:
        tables = [row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]  # fmt: skip
        dump = "\n".join(
            str(row)
            for table in tables
            if table != "shoestring_inbound"
            for row in database.execute(f'SELECT * FROM "{table}"')
        ).lower()
    for secret in (OWNER, "ada.lovelace", BOB, "bike is ready"):
        assert secret not in dump, f"{secret!r} is in the database"
        assert secret not in log.lower(), f"{secret!r} is in the log"


def owners_reply(reverse_alias: str, message_id: str = "<reply-1@owner.example>") -> EmailMessage:
    """What the owner's mail client sends: their address in From, quotes and signature."""
    message = EmailMessage()
    message["From"] = f"Ada Lovelace <{OWNER}>"
    message["To"] = f"Bob Example - bob at elsewhere.example <{reverse_alias}>"
    message["Subject"] = "Re: Your order"
    message["Message-ID"] = message_id
    message["In-Reply-To"] = "<order-1@elsewhere.example>"
    message["References"] = "<order-0@elsewhere.example> <order-1@elsewhere.example>"
    message["X-Mailer"] = "Owner Mail 1.0"
    message.set_content(
        "Great, I will pick it up on Friday.\n\n"
        f"-- \nAda, {OWNER}\n\n"
        f"On Tuesday, Bob Example <{reverse_alias}> wrote:\n"
        "> Your bike is ready.\n"
    )
    message.add_alternative(
        f'<p>Great, I will pick it up on Friday.</p><p>Ada, <a href="mailto:{OWNER}">{OWNER}</a></p>',
        subtype="html",
    )
    return message


def bounce_report(verp: str, number: int) -> bytes:
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.owner.example>\r\n"
        f"To: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-{number}@mx.owner.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nThe mailbox does not exist.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.owner.example\r\n\r\n"
        "Final-Recipient: rfc822; someone@owner.example\r\nAction: failed\r\n"
        "Status: 5.1.1\r\n\r\n--R--\r\n"
    ).encode()


def test_bounces_to_the_verp_address_are_counted_and_pause_the_alias(
    tmp_path: Path, sink: Sink
) -> None:
    othermail = Othermail(tmp_path, sink=sink)
    try:
        token = othermail.sign_up()
        othermail.create(token, local_part="shop")
        assert accepted(othermail.swaks(to=SHOP, message=bobs_mail()))
        verp = othermail.delivered(2)[1]["from"]
        forged = re.sub(r"_[a-z2-7]{16}@", "_aaaaaaaaaaaaaaaa@", verp)
        assert refused_at_rcpt(othermail.swaks(to=forged, mail_from=""))

        assert accepted(othermail.swaks(to=verp, mail_from="", message=bounce_report(verp, 1)))
        deadline = time.monotonic() + 10
        while othermail.alias(token, SHOP)["bounced"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert othermail.alias(token, SHOP)["state"] == "active"  # one bounce is not enough
        for number in (2, 3):
            assert accepted(
                othermail.swaks(to=verp, mail_from="", message=bounce_report(verp, number))
            )
        while othermail.alias(token, SHOP)["bounced"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        alias = othermail.alias(token, SHOP)
        assert (alias["bounced"], alias["state"]) == (3, "paused")
        assert alias["paused_reason"] == "bounces"
        assert refused_at_rcpt(othermail.swaks(to=SHOP))
        resumed = othermail.call("PATCH", f"/api/aliases/{SHOP}", token, paused=False).json()
        assert (resumed["state"], resumed["paused_reason"]) == ("active", None)
        assert accepted(othermail.swaks(to=SHOP))
    finally:
        othermail.stop()


def test_sign_up_refuses_our_own_domain_and_tokens_are_checked(tmp_path: Path) -> None:
    othermail = Othermail(tmp_path)
    try:
        looping = othermail.call("POST", "/api/signup", email=f"me@{DOMAIN}")
        assert looping.status_code == 422 and "real address" in looping.json()["error"]["message"]
        assert othermail.call("GET", "/api/aliases").status_code == 401
        assert othermail.call("GET", "/api/aliases", "made-up").json()["error"]["code"] == "signed_out"  # fmt: skip
        token = othermail.sign_up()
        for name, problem in (("postmaster", "reserved"), ("a..b", "letters"), ("-x", "letters")):
            response = othermail.call("POST", "/api/aliases", token, local_part=name)
            assert response.status_code == 422 and problem in response.json()["error"]["message"]
        random = othermail.create(token, note="newsletter")
        assert re.fullmatch(rf"[a-z2-9]{{8}}@{re.escape(DOMAIN)}", random["address"])
        assert othermail.call("POST", "/api/signout", token).status_code == 200
        assert othermail.call("GET", "/api/aliases", token).status_code == 401
    finally:
        othermail.stop()


def test_shoestring_new_can_start_from_othermail(tmp_path: Path) -> None:
    made = subprocess.run(
        [SHOESTRING, "new", str(tmp_path / "mine"), "--template", "othermail"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "mine" / "app.py").read_text().startswith('"""othermail')
    assert (tmp_path / "mine" / "web" / "index.html").exists()


def test_deleting_the_account_forgets_the_address_and_ends_every_alias(tmp_path: Path) -> None:
    othermail = Othermail(tmp_path)
    try:
        token = othermail.sign_up()
        other_browser = othermail.sign_up()
        othermail.create(token, local_part="shop")
        assert accepted(othermail.swaks(to=SHOP))
        assert othermail.call("DELETE", "/api/account").status_code == 401  # not signed in
        gone = othermail.call("DELETE", "/api/account", token)
        assert (gone.status_code, gone.json()) == (200, {"status": "deleted"})
        for browser in (token, other_browser):
            assert othermail.call("GET", "/api/aliases", browser).status_code == 401
        assert refused_at_rcpt(othermail.swaks(to=SHOP))
        # signing up again starts afresh, and the old alias stays taken for good
        again = othermail.sign_up()
        assert othermail.call("GET", "/api/aliases", again).json()["aliases"] == []
        taken = othermail.call("POST", "/api/aliases", again, local_part="shop")
        assert taken.json()["error"]["code"] == "alias_taken"
        othermail.call("DELETE", "/api/account", again)
    finally:
        othermail.stop()
    with sqlite3.connect(othermail.project / "data" / "shoestring.db") as database:
        accounts = database.execute("SELECT count(*) FROM tbl_accounts").fetchone()
        sessions = database.execute("SELECT count(*) FROM tbl_sessions").fetchone()
    assert (accounts, sessions) == ((0,), (0,))


def test_sign_up_limits_a_mailbox_and_refuses_what_it_cannot_mail(tmp_path: Path) -> None:
    othermail = Othermail(tmp_path)
    try:
        foreign = othermail.call("POST", "/api/signup", email="ålice@owner.example")
        assert foreign.status_code == 422, foreign.text
        assert "ASCII before the @" in foreign.json()["error"]["message"]
        # target+1@…, target+2@… are target@…'s mailbox: one limit for them all.
        for address in ("target@owner.example", "target+1@owner.example", "target+2@owner.example"):
            assert othermail.call("POST", "/api/signup", email=address).status_code == 202
        limited = othermail.call("POST", "/api/signup", email="target+3@owner.example")
        assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
        sent = {tuple(m["to"]) for m in othermail.http.get("/_dev/mail").json()["messages"]}
        assert ("target+2@owner.example",) in sent  # the mail goes to the address as typed
    finally:
        othermail.stop()
