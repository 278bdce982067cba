"""Forwarding's pure parts: the rewritten copy, the scrubbed reply, VERP, the owner check, loops."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoestring.mail.inbound import InboundMessage, sent_by
from shoestring.mail.inbound import rewrite as fwd
from shoestring.mail.outbox import wire_text

DOMAIN = "othermail.example"
ALIAS = f"x7k2@{DOMAIN}"
OWNER = "ada.lovelace@owner.example"
KEY = b"k" * 32


def inbound(
    raw: bytes | EmailMessage,
    *,
    recipient: str = ALIAS,
    mail_from: str = "bob@elsewhere.example",
    authentication: dict[str, str] | None = None,
) -> InboundMessage:
    if isinstance(raw, EmailMessage):
        raw = raw.as_bytes(policy=email.policy.SMTP)
    return InboundMessage(
        id="spool1", mail_from=mail_from, recipient=recipient, recipients=(recipient,),
        raw=raw, received_at=datetime.now(UTC), authentication=authentication or {},
    )  # fmt: skip


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


ORIGINAL = (
    b"Received: from mx.elsewhere.example by mx.othermail.example\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=elsewhere.example; s=s; b=broken\r\n"
    b"Authentication-Results: mx.othermail.example; spf=pass smtp.mailfrom=elsewhere.example\r\n"
    b"From: Bob Example <bob@elsewhere.example>\r\n"
    b"Sender: list@lists.example\r\n"
    b"To: x7k2@othermail.example, Carol <carol@third.example>\r\n"
    b"Cc: dave@fourth.example\r\n"
    b"Subject: Lunch?\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m2@elsewhere.example>\r\n"
    b"In-Reply-To: <m1@othermail.example>\r\n"
    b"References: <m0@elsewhere.example> <m1@othermail.example>\r\n"
    b"X-Original-From: forged@bank.example\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="BB"\r\n'
    b"\r\n"
    b"--BB\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Shall we have lunch on Friday? \xe2\x98\x95\r\n"
    b"--BB\r\n"
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="menu.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcfs\r\n"
    b"--BB--\r\n"
)


def forwarded(raw: bytes = ORIGINAL, **overrides: str) -> EmailMessage:
    message = inbound(raw, **overrides)
    people = fwd.correspondents(message.parsed, {DOMAIN}, message.mail_from)
    reverse = {
        address.lower(): fwd.reverse_alias_address(
            fwd.reverse_alias_token(KEY, ALIAS, address), DOMAIN
        )
        for _, address in people
    }
    return fwd.forwarded_copy(
        message.parsed, reverse_aliases=reverse, our_domains={DOMAIN}, fallback_from=ALIAS,
        envelope_sender=message.mail_from,
        restore_id=lambda mid: fwd.revealed_message_id(KEY, mid) or mid,
    )  # fmt: skip


def reverse_alias(correspondent: str) -> str:
    return fwd.reverse_alias_address(fwd.reverse_alias_token(KEY, ALIAS, correspondent), DOMAIN)


# -- the forwarded copy ------------------------------------------------------------


def test_the_copy_comes_from_our_domain_through_reverse_aliases() -> None:
    copy = parse(forwarded().as_bytes(policy=email.policy.SMTP))
    sender = copy["From"].addresses[0]
    assert sender.addr_spec == reverse_alias("bob@elsewhere.example")
    assert sender.domain == DOMAIN and sender.username.startswith("ra_")
    assert sender.display_name == "Bob Example - bob at elsewhere.example"
    assert copy["Reply-To"].addresses[0].addr_spec == sender.addr_spec
    # "reply all" reaches the others through us too; the alias stays as it was
    to = [a.addr_spec for a in copy["To"].addresses]
    assert to == [ALIAS, reverse_alias("carol@third.example")]
    assert copy["To"].addresses[1].display_name == "Carol - carol at third.example"
    assert [a.addr_spec for a in copy["Cc"].addresses] == [reverse_alias("dave@fourth.example")]
    assert copy["X-Original-From"] == "Bob Example <bob@elsewhere.example>"


def test_the_copy_keeps_threading_and_the_body_and_drops_what_no_longer_holds() -> None:
    original, copy = parse(ORIGINAL), forwarded()
    for name in ("Subject", "Date", "Message-ID", "In-Reply-To", "References", "Received"):
        assert str(copy[name]) == str(original[name])
    for name in ("DKIM-Signature", "Authentication-Results", "Sender"):
        assert name not in copy
    assert copy.get_all("X-Original-From") == ["Bob Example <bob@elsewhere.example>"]
    # MIME structure and every part's bytes unchanged
    original_parts = [(p.get_content_type(), p.get_payload(decode=True)) for p in original.walk()]
    copy_parts = [(p.get_content_type(), p.get_payload(decode=True)) for p in copy.walk()]
    assert copy_parts == original_parts
    assert copy.get_boundary() == original.get_boundary() == "BB"


def test_reply_to_of_the_original_gets_its_own_reverse_alias() -> None:
    raw = ORIGINAL.replace(b"Subject:", b"Reply-To: Help Desk <help@elsewhere.example>\r\nSubject:")
    copy = forwarded(raw)
    assert copy["Reply-To"].addresses[0].addr_spec == reverse_alias("help@elsewhere.example")
    assert copy["From"].addresses[0].addr_spec == reverse_alias("bob@elsewhere.example")


def test_a_reverse_alias_is_per_alias_and_correspondent() -> None:
    token = fwd.reverse_alias_token(KEY, ALIAS, "bob@elsewhere.example")
    assert token == fwd.reverse_alias_token(KEY, ALIAS.upper(), "BOB@elsewhere.example")
    assert token != fwd.reverse_alias_token(KEY, f"other@{DOMAIN}", "bob@elsewhere.example")
    assert token != fwd.reverse_alias_token(b"x" * 32, ALIAS, "bob@elsewhere.example")
    assert fwd.reverse_alias_token_of(fwd.reverse_alias_address(token, DOMAIN).upper()) == token
    assert fwd.reverse_alias_token_of(f"ra_short@{DOMAIN}") is None
    assert fwd.reverse_alias_token_of(ALIAS) is None


def test_without_a_usable_sender_the_copy_comes_from_the_alias() -> None:
    raw = ORIGINAL.replace(b"From: Bob Example <bob@elsewhere.example>", b"From: nobody")
    copy = forwarded(raw, mail_from="")
    assert copy["From"].addresses[0].addr_spec == ALIAS
    assert "X-Original-From" not in copy and "Reply-To" not in copy


def test_mail_claiming_to_be_from_our_domain_does_not_go_out_as_ours() -> None:
    raw = ORIGINAL.replace(
        b"Bob Example <bob@elsewhere.example>", b"Support <noreply@othermail.example>"
    )
    copy = forwarded(raw)
    sender = copy["From"].addresses[0]
    assert sender.addr_spec == reverse_alias(f"noreply@{DOMAIN}")
    assert sender.display_name == f"Support - noreply at {DOMAIN}"
    assert copy["To"].addresses[0].addr_spec == ALIAS  # recipients at our domain stay


def test_the_envelope_sender_stands_in_for_a_missing_from() -> None:
    raw = ORIGINAL.replace(b"From: Bob Example <bob@elsewhere.example>\r\n", b"")
    copy = forwarded(raw, mail_from="robot@elsewhere.example")
    assert copy["From"].addresses[0].addr_spec == reverse_alias("robot@elsewhere.example")


def test_a_crafted_display_name_cannot_add_headers_or_pass_for_an_address() -> None:
    raw = ORIGINAL.replace(
        b"From: Bob Example <bob@elsewhere.example>",
        b"From: =?utf-8?q?support=40bank=2Eexample=0D=0ABcc=3A_eve=40evil=2Eexample?="
        b" <bob@elsewhere.example>",
    )
    copy = forwarded(raw)
    wire = wire_text(copy, message_id_domain=DOMAIN)  # the outbox's header checks pass
    head = wire.split("\r\n\r\n", 1)[0]
    assert "\nBcc" not in head and "eve@evil" not in head
    # Python cannot read that From: the envelope sender stands in for it
    assert parse(wire.encode())["From"].addresses[0].display_name == "bob at elsewhere.example"

    lookalike = ORIGINAL.replace(b"Bob Example <", b'"support@bank.example" <')
    name = parse(forwarded(lookalike).as_bytes())["From"].addresses[0].display_name
    assert name == "support at bank.example - bob at elsewhere.example"


@given(st.text(max_size=200), st.emails())
def test_display_names_never_hold_an_at_sign_or_a_control_character(name: str, sender: str) -> None:
    shown = fwd.display_name(name, sender)
    assert "@" not in shown and all(c.isprintable() for c in shown)
    assert shown.endswith(sender.replace("@", " at ", 1).replace("@", " at "))


# -- loops ----------------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_LOCAL = st.from_regex(r"[A-Za-z0-9._%+!-]{1,20}", fullmatch=True)


@given(_LOCAL, st.sampled_from([DOMAIN, "in.othermail.example"]), st.booleans(), st.booleans())
def test_nothing_is_ever_sent_to_our_own_domains(
    local: str, domain: str, upper: bool, trailing_dot: bool
) -> None:
    target = f"{local}@{domain.upper() if upper else domain}{'.' if trailing_dot else ''}"
    assert not fwd.may_deliver_to(target, [DOMAIN, "in.othermail.example"])
    assert not fwd.may_deliver_to(ALIAS, [DOMAIN])


@given(_LOCAL, st.lists(_LABEL, min_size=1, max_size=3))
def test_other_domains_may_get_mail(local: str, labels: list[str]) -> None:
    domain = ".".join([*labels, "net"])
    assert fwd.may_deliver_to(f"{local}@{domain}", [DOMAIN]) == (domain != DOMAIN)
    assert not fwd.may_deliver_to(local, [DOMAIN])  # no domain at all: refused


# -- VERP -----------------------------------------------------------------------------

_TOKENS = st.from_regex(r"[a-z2-7]{16}", fullmatch=True)


@given(_TOKENS, st.sampled_from(["forward", "reply"]), st.integers(1, 2**40))
def test_a_bounce_address_says_what_it_was_made_with(token: str, kind: str, expires: int) -> None:
    address = fwd.bounce_address(KEY, domain=DOMAIN, kind=kind, token=token, expires=expires)  # type: ignore[arg-type]
    local, _, domain = address.partition("@")
    assert domain == DOMAIN and len(local) <= 64 and local == local.lower()
    read = fwd.read_bounce_address(KEY, address.upper())  # MTAs may change the case
    assert read == fwd.BounceAddress(kind, token, expires)  # type: ignore[arg-type]
    assert read.expired(expires) and not read.expired(expires - 1)
    assert fwd.read_bounce_address(b"other key" * 4, address) is None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 49), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567_"))
def test_a_changed_bounce_address_is_refused(position: int, replacement: str) -> None:
    address = fwd.bounce_address(
        KEY, domain=DOMAIN, kind="forward", token="a" * 16, expires=2_000_000_000
    )
    local = address.partition("@")[0]
    changed = local[:position] + replacement + local[position + 1 :]
    if changed != local:
        assert fwd.read_bounce_address(KEY, f"{changed}@{DOMAIN}") in (None,) or (
            # a base32 tail may carry unused bits: same value, so the same (valid) address
            fwd.read_bounce_address(KEY, f"{changed}@{DOMAIN}")
            == fwd.read_bounce_address(KEY, address)
        )


def test_bounce_addresses_of_other_shapes_are_not_ours() -> None:
    for address in (ALIAS, "bounce_x@a.example", "bounce_f_short_a_b@a.example", ""):
        assert fwd.read_bounce_address(KEY, address) is None


# -- the owner check ---------------------------------------------------------------

PASS_SPF = {"spf": "pass", "spf_domain": "owner.example", "dkim": "none", "dmarc": "none"}


def from_owner(authentication: dict[str, str], *, sender: str = OWNER, mail_from: str = OWNER) -> InboundMessage:  # fmt: skip
    message = EmailMessage()
    message["From"] = sender
    message["To"] = reverse_alias("bob@elsewhere.example")
    message["Subject"] = "Re: Lunch?"
    message.set_content("Yes!")
    return inbound(
        message, mail_from=mail_from, recipient=reverse_alias("bob@elsewhere.example"),
        authentication=authentication,
    )  # fmt: skip


@pytest.mark.parametrize(
    "authentication",
    [
        PASS_SPF,
        {"spf": "fail", "dkim": "pass", "dkim_domains": "relay.example owner.example"},
        {"spf": "none", "dkim": "none", "dmarc": "pass", "from_domain": "owner.example"},
    ],
)
def test_the_owner_is_recognised_by_spf_dkim_or_dmarc(authentication: dict[str, str]) -> None:
    assert sent_by(from_owner(authentication), OWNER)
    assert sent_by(from_owner(authentication, sender=f"Ada <{OWNER.upper()}>"), OWNER)


@pytest.mark.parametrize(
    "authentication",
    [
        {},  # no checks ran
        {"spf": "fail", "spf_domain": "owner.example", "dkim": "none", "dmarc": "fail"},
        {"spf": "softfail", "spf_domain": "owner.example"},
        {"spf": "pass", "spf_domain": "evil.example"},  # the forger's own domain passes
        {"spf": "pass", "spf_domain": "sub.owner.example"},  # not the owner's domain
        {"dkim": "pass", "dkim_domains": "evil.example"},
        {"dkim": "fail", "dkim_domains": "owner.example"},
        {"dmarc": "pass", "from_domain": "evil.example"},
        {"spf": "temperror", "dkim": "temperror", "dmarc": "temperror"},
    ],
)
def test_a_forged_from_is_not_the_owner(authentication: dict[str, str]) -> None:
    assert not sent_by(from_owner(authentication), OWNER)


def test_spf_must_be_for_the_envelope_sender_at_the_owners_domain() -> None:
    # SPF passed for a HELO name that happens to be the owner's domain, MAIL FROM empty
    assert not sent_by(from_owner(PASS_SPF, mail_from=""), OWNER)


def test_two_from_addresses_are_never_the_owner() -> None:
    both = f"{OWNER}, eve@evil.example"
    assert not sent_by(from_owner(PASS_SPF, sender=both), OWNER)


@given(st.emails())
def test_whoever_is_not_the_owner_is_refused_whatever_passed(sender: str) -> None:
    authentication = {"spf": "pass", "spf_domain": fwd.domain_of(sender), "dkim": "pass",
                      "dkim_domains": fwd.domain_of(sender), "dmarc": "pass",
                      "from_domain": fwd.domain_of(sender)}  # fmt: skip
    try:
        message = from_owner(authentication, sender=sender, mail_from=sender)
    except (ValueError, IndexError):
        return  # an address Python's email package will not write as a header
    assert sent_by(message, OWNER) == (sender.lower() == OWNER)


# -- scrubbing -----------------------------------------------------------------------


def _variants(address: str) -> st.SearchStrategy[str]:
    local, _, domain = address.partition("@")
    at = st.sampled_from(["@", "%40", "&#64;", "&#x40;", "&commat;", "&#064;"])
    return st.builds(
        lambda flips, sign: (
            "".join(c.upper() if f else c for c, f in zip(local, flips, strict=False))
            + sign
            + domain.upper()
        ),
        st.lists(st.booleans(), min_size=len(local), max_size=len(local)),
        at,
    )


@given(st.lists(st.one_of(st.text(max_size=30), _variants(OWNER)), max_size=12))
def test_scrubbing_leaves_no_trace_of_the_address(pieces: list[str]) -> None:
    scrubbed = fwd.scrub("".join(pieces), OWNER, ALIAS)
    for form in ("@", "%40", "&#64;", "&#x40;", "&commat;", "&#064;"):
        assert OWNER.replace("@", form).lower() not in scrubbed.lower()


def test_scrubbing_replaces_the_address_with_the_alias() -> None:
    text = f"> On Tuesday Ada <{OWNER.upper()}> wrote:\n> mailto:{OWNER.replace('@', '%40')}"
    assert fwd.scrub(text, OWNER, ALIAS) == (f"> On Tuesday Ada <{ALIAS}> wrote:\n> mailto:{ALIAS}")


def test_a_replacement_that_completes_the_address_is_hidden() -> None:
    # owner "e@x.exa" appears again when "x@x.exa" is put between "e@x.exa" and its ending
    owner, alias = "a@b.ab", "b@b.a"
    scrubbed = fwd.scrub("a@b.ab@b.ab", owner, alias)
    assert owner not in scrubbed.lower()


# -- the reply -------------------------------------------------------------------------

CORRESPONDENT = Address("Bob Example", "bob", "elsewhere.example")


def owners_reply() -> EmailMessage:
    """A reply as a mail client writes it: the owner's address in headers, quotes, parts."""
    message = EmailMessage()
    message["Received"] = f"from [192.0.2.7] by smtp.owner.example for <{OWNER}>"
    message["From"] = f"Ada Lovelace <{OWNER}>"
    message["Sender"] = OWNER
    message["Return-Path"] = f"<{OWNER}>"
    message["To"] = (
        f"Bob Example - bob at elsewhere.example <{reverse_alias('bob@elsewhere.example')}>"
    )
    message["Subject"] = f"Re: Lunch? (from {OWNER})"
    message["Date"] = "Tue, 24 Nov 2026 11:00:00 +0000"
    message["Message-ID"] = "<reply1@owner.example>"
    message["In-Reply-To"] = "<m2@elsewhere.example>"
    message["References"] = "<m0@elsewhere.example> <m2@elsewhere.example>"
    message["X-Mailer"] = "Owner Mail 1.0"
    message["Disposition-Notification-To"] = OWNER
    message.set_content(
        f"Friday works.\n\n-- \nAda, {OWNER.upper()}\n\n"
        f"> On Tuesday, Bob wrote to {ALIAS}:\n> Shall we have lunch?\n",
        cte="quoted-printable",
    )
    message.add_alternative(
        f'<p>Friday works.</p><p>Ada, <a href="mailto:{OWNER}">{OWNER.replace("@", "&#64;")}</a></p>',
        subtype="html", cte="base64",
    )  # fmt: skip
    card = f"BEGIN:VCARD\r\nEMAIL:{OWNER}\r\nEND:VCARD\r\n".encode("latin-1")
    message.add_attachment(card, maintype="text", subtype="vcard", filename="ada.vcf")
    quoted = EmailMessage()
    quoted["From"] = OWNER
    quoted["Subject"] = "an older mail"
    quoted.set_content(f"sent by {OWNER}")
    message.add_attachment(quoted)
    return message


def test_the_reply_goes_from_the_alias_and_keeps_threading() -> None:
    reply = fwd.reply_copy(owners_reply(), alias=ALIAS, to=CORRESPONDENT, owner=OWNER)
    received = parse(wire_text(reply, message_id_domain=DOMAIN).encode())
    assert received["From"].addresses[0].addr_spec == ALIAS
    assert [a.addr_spec for a in received["To"].addresses] == ["bob@elsewhere.example"]
    assert received["Message-ID"] == "<reply1@owner.example>"
    assert received["In-Reply-To"] == "<m2@elsewhere.example>"
    assert received["References"] == "<m0@elsewhere.example> <m2@elsewhere.example>"
    assert received["Subject"] == f"Re: Lunch? (from {ALIAS})"
    for name in ("Sender", "Return-Path", "X-Mailer", "Disposition-Notification-To"):
        assert name not in received
    # the owner's trace: counted, never shown
    assert received.get_all("Received") == [
        f"by {DOMAIN} with shoestring-forwarder; {received['Received'].split('; ')[1]}"
    ]
    text = received.get_body(("plain",))
    assert text is not None and f"Ada, {ALIAS}" in text.get_content()
    assert "> Shall we have lunch?" in text.get_content()
    assert len(list(received.iter_attachments())) == 2


def test_an_auto_reply_says_so_and_keeps_its_hop_count() -> None:
    # RFC 3834: the correspondent's own auto-responder must see that this is one,
    # and a loop through the forwarder must still reach the hop limit.
    vacation = owners_reply()
    vacation["Auto-Submitted"] = "auto-replied"
    vacation["Precedence"] = "bulk"
    vacation["List-Id"] = "<notices.owner.example>"
    for hop in range(3):
        vacation["Received"] = (
            f"from relay{hop}.owner.example ([192.0.2.{hop}]) by mx.owner.example"
        )
    reply = fwd.reply_copy(vacation, alias=ALIAS, to=CORRESPONDENT, owner=OWNER)
    received = parse(wire_text(reply, message_id_domain=DOMAIN).encode())
    assert received["Auto-Submitted"] == "auto-replied"
    assert received["Precedence"] == "bulk"
    assert received["List-Id"] == "<notices.owner.example>"
    assert fwd.hops(received) == 4  # the owner's provider's, and the three relays'
    trace = " ".join(received.get_all("Received"))
    assert "owner.example" not in trace and "192.0.2" not in trace


def test_the_owners_address_is_nowhere_in_the_reply() -> None:
    reply = fwd.reply_copy(owners_reply(), alias=ALIAS, to=CORRESPONDENT, owner=OWNER)
    wire = wire_text(reply, message_id_domain=DOMAIN).encode()
    assert OWNER.encode() not in wire.lower()
    assert _decoded_everywhere(parse(wire)).lower().count(OWNER) == 0


def test_a_plain_reply_scrubbed_into_base64_says_it_is_mime() -> None:
    plain = parse(
        f"From: {OWNER}\r\nTo: {ALIAS}\r\nSubject: Re: x\r\n\r\nthanks, {OWNER}\r\n".encode()
    )
    assert "MIME-Version" not in plain
    reply = fwd.reply_copy(plain, alias=ALIAS, to=CORRESPONDENT, owner=OWNER)
    received = parse(wire_text(reply, message_id_domain=DOMAIN).encode())
    assert received["MIME-Version"] == "1.0"
    assert received.get_content().strip() == f"thanks, {ALIAS}"


def _decoded_everywhere(message: EmailMessage) -> str:
    """Every header value and every part's decoded payload, as one text."""
    texts = []
    for part in message.walk():
        texts += [str(value) for value in part.values()]
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload.decode("latin-1"))
    return "\n".join(texts)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["Subject", "Comments", "Keywords", "X-Anything", "Message-ID"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=40),
    _variants(OWNER),
    st.sampled_from(["utf-8", "iso-8859-1", "x-unknown-charset"]),
    st.sampled_from(["7bit", "quoted-printable", "base64", "8bit"]),
)
def test_the_owner_never_shows_wherever_the_client_put_them(
    header: str, text: str, address: str, charset: str, encoding: str
) -> None:
    message = EmailMessage()
    message["From"] = OWNER
    message[header] = f"{text} {address}" if header != "Message-ID" else f"<x.{OWNER}>"
    body = f"{text}\n> {address} wrote:\n{text}{address}\n".encode()
    raw = (
        message.as_bytes(policy=email.policy.SMTP).split(b"\r\n\r\n")[0]
        + (
            f"\r\nContent-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
    )
    raw += body.replace(b"\n", b"\r\n") if encoding != "base64" else b"Zm9v\r\n"
    reply = fwd.reply_copy(parse(raw), alias=ALIAS, to=CORRESPONDENT, owner=OWNER)
    wire = wire_text(reply, message_id_domain=DOMAIN)
    assert OWNER not in _decoded_everywhere(parse(wire.encode("utf-8"))).lower()
    assert OWNER not in wire.lower()


# -- bounces ----------------------------------------------------------------------------


def dsn(action: str, status: str) -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.owner.example\r\nTo: bounce@othermail.example\r\n"
        b"Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        b"--R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.owner.example\r\n\r\n"
        b"Final-Recipient: rfc822; ada.lovelace@owner.example\r\n"
        + f"Action: {action}\r\nStatus: {status}\r\n".encode()
        + b"\r\n--R--\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "mail_from", "expected"),
    [
        (dsn("failed", "5.1.1"), "", fwd.DeliveryFailure(True, "5.1.1")),
        (dsn("failed", "5.2.2 (mailbox full)"), "", fwd.DeliveryFailure(True, "5.2.2")),
        (dsn("failed", "4.4.7"), "", fwd.DeliveryFailure(False, "4.4.7")),
        (dsn("delayed", "4.4.1"), "", None),  # still trying: not a failure
        (b"Subject: Delivery failed\r\n\r\nUser unknown\r\n", "", fwd.DeliveryFailure(True, "")),
        (b"Subject: Out of office\r\n\r\nBack on Monday\r\n", "ada@owner.example", None),
    ],
)
def test_what_counts_as_a_bounce(
    raw: bytes, mail_from: str, expected: fwd.DeliveryFailure | None
) -> None:
    assert fwd.delivery_failure(inbound(raw, mail_from=mail_from)) == expected


def test_a_global_dsn_is_read_too() -> None:
    raw = dsn("failed", "5.1.1").replace(
        b"message/delivery-status", b"message/global-delivery-status"
    )
    assert fwd.delivery_failure(inbound(raw, mail_from="")) == fwd.DeliveryFailure(True, "5.1.1")


# -- Message-IDs of replies ---------------------------------------------------------------


@given(st.from_regex(r"<[A-Za-z0-9._+$-]{1,60}@[a-z0-9.-]{1,40}>", fullmatch=True))
def test_a_hidden_message_id_reveals_only_with_the_key(message_id: str) -> None:
    hidden = fwd.hidden_message_id(KEY, message_id, DOMAIN)
    assert hidden == fwd.hidden_message_id(KEY, message_id, DOMAIN)  # the same every time
    assert hidden.endswith(f"@{DOMAIN}>") and message_id.lower() not in hidden.lower()
    assert fwd.revealed_message_id(KEY, hidden) == message_id
    assert fwd.revealed_message_id(KEY, hidden.upper()) == message_id
    assert fwd.revealed_message_id(b"other key" * 4, hidden) is None
    assert fwd.revealed_message_id(KEY, message_id) is None


def test_the_reply_hides_the_owners_message_ids_and_the_forward_restores_them() -> None:
    def hide(message_id: str) -> str:
        return fwd.hidden_message_id(KEY, message_id, DOMAIN)

    mine = owners_reply()
    del mine["References"]
    mine["References"] = "<m0@elsewhere.example> <reply0@owner.example> <m2@elsewhere.example>"
    reply = fwd.reply_copy(mine, alias=ALIAS, to=CORRESPONDENT, owner=OWNER, hide_id=hide)
    assert reply["Message-ID"] == hide("<reply1@owner.example>")
    assert reply["In-Reply-To"] == "<m2@elsewhere.example>"  # the correspondent's own id
    assert str(reply["References"]).split() == [
        "<m0@elsewhere.example>", hide("<reply0@owner.example>"), "<m2@elsewhere.example>",
    ]  # fmt: skip
    assert "owner.example" not in wire_text(reply, message_id_domain=DOMAIN).lower()

    # the correspondent answers that reply: the owner's client sees its own ids again
    answer = ORIGINAL.replace(b"<m1@othermail.example>", hide("<reply1@owner.example>").encode())
    copy = forwarded(answer)
    assert copy["In-Reply-To"] == "<reply1@owner.example>"
    assert str(copy["References"]).split() == ["<m0@elsewhere.example>", "<reply1@owner.example>"]
