"""Raw header surgery: what decides that a message carries smuggling sequences."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoestring.mail.headers import has_bare_line_ending, strip_ours

# RFC 5321 §2.3.8: CR and LF only ever travel together, as CRLF.
BARE = re.compile(rb"(?<!\r)\n|\r(?!\n)")


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n"]), max_size=40))
def test_a_lone_cr_or_lf_anywhere_is_found(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    assert has_bare_line_ending(raw) == (BARE.search(raw) is not None)


def test_the_smuggling_sequences_are_bare_and_crlf_lines_are_not() -> None:
    assert has_bare_line_ending(b"first\n.\nMAIL FROM:<e@x>\r\n")
    assert has_bare_line_ending(b"first\r.\r\n")
    assert has_bare_line_ending(b"end\r\n.\r")
    assert not has_bare_line_ending(b"Subject: hi\r\n\r\nbody\r\n.\r\n")


@pytest.mark.parametrize(
    "value",
    [
        b"mx.demo.example; dmarc=pass",
        b"MX.Demo.Example; dmarc=pass",
        b"(c) mx.demo.example (c); dmarc=pass",
        b"\r\n mx.demo.example;\r\n dmarc=pass",
        b"mx.demo.example 1; dmarc=pass",
        b'"mx.demo.example"; dmarc=pass',  # RFC 8601 2.2: a quoted-string is a value too
        b'"mx.demo\\.example" ; dmarc=pass',
        b"=?utf-8?q?mx.demo.example?=; dmarc=pass",  # what a reader decoding it sees
        b"=?utf-8?b?bXguZGVtby5leGFtcGxl?=; dmarc=pass",
        b'"=?utf-8?q?MX.demo.example.?="; dmarc=pass',
        b"mx.demo.example.; dmarc=pass",  # the same host, fully qualified
    ],
)
def test_authentication_results_naming_us_in_any_spelling_are_removed(value: bytes) -> None:
    raw = b"From: a@b.example\r\nAuthentication-Results: " + value + b"\r\n\r\nbody\r\n"
    assert strip_ours(raw, "mx.demo.example") == b"From: a@b.example\r\n\r\nbody\r\n"


@pytest.mark.parametrize("value", [b"mx.demo.example.other; dmarc=pass", b'"other"; spf=fail'])
def test_authentication_results_of_others_are_kept(value: bytes) -> None:
    raw = b"From: a@b.example\r\nAuthentication-Results: " + value + b"\r\n\r\nbody\r\n"
    assert strip_ours(raw, "mx.demo.example") == raw
