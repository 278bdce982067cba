"""Raw header surgery: what decides that a message carries smuggling sequences."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from shoestring.mail.headers import has_bare_line_ending

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
