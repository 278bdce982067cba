from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoestring.scrub import _redact, scrub

# Addresses as people have them: dotted, plus-tagged, hyphenated, unicode.
local_parts = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,30}", fullmatch=True)
domains = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}(\.[a-z0-9][a-z0-9-]{0,20}){1,3}", fullmatch=True)
surroundings = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)


@given(local=local_parts, domain=domains, before=surroundings, after=surroundings)
def test_no_email_address_survives(local: str, domain: str, before: str, after: str) -> None:
    address = f"{local}@{domain}"
    assert address not in scrub(f"{before} {address} {after}")


@given(local=local_parts, domain=domains)
def test_url_encoded_addresses_in_queries_are_removed(local: str, domain: str) -> None:
    line = f"GET /register?email={local}%40{domain}&next=/home 200"
    assert f"{local}%40{domain}" not in scrub(line)
    assert scrub(line).startswith("GET /register?email=")


@pytest.mark.parametrize(
    ("line", "address"),
    [
        ("550 5.1.1 <bob@[192.0.2.7]>: unknown", "bob@[192.0.2.7]"),
        ("to bob@[IPv6:2001:db8::1] refused", "bob@[IPv6:2001:db8::1]"),
        ("GET /u?email=bob%40%5B192.0.2.7%5D 200", "bob%40%5B192.0.2.7%5D"),
    ],
)
def test_addresses_at_address_literals_are_removed(line: str, address: str) -> None:
    scrubbed = scrub(line)
    assert address not in scrubbed and "bob" not in scrubbed and "[email]" in scrubbed


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig", "eyJhbGciOi"),
        ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('{"cookie": "session=abc123; theme=dark"}', "abc123"),
        ("set-cookie: sid=s3cr3t; HttpOnly", "s3cr3t"),
        ("GET /cb?code=4/0AfJohXk&state=xyz", "4/0AfJohXk"),
        ("GET /x?access_token=tok_123&page=2", "tok_123"),
        ("GET /o?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAEXAMPLE%2F20261124", "deadbeef"),
        ("GET /o?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAEXAMPLE%2F20261124", "AKIAEXAMPLE"),
        ("config password='hunter2'", "hunter2"),
        ("{'api_key': 'k-9f8e7d'}", "k-9f8e7d"),
        ("client_id=3f2a9c1e-77aa", "3f2a9c1e-77aa"),
        ("x-api-key: live_abcdef", "live_abcdef"),
        ("confirmation code: 493817", "493817"),
    ],
)
def test_credentials_and_secret_fields_are_redacted(line: str, secret: str) -> None:
    assert secret not in scrub(line)
    assert "[redacted]" in scrub(line)


@pytest.mark.parametrize(
    "line",
    [
        "GET /notes/42?page=2&sort=desc 200",
        "request_id=ab12cd34 status=200 ms=1.2",
        "serving demo on http://127.0.0.1:8000",
        "process already dead, exit code: 0",
        "relay answered with status code: 451",
    ],
)
def test_ordinary_lines_are_left_alone(line: str) -> None:
    assert scrub(line) == line


# Pieces of paths and lines: characters the fast path lets through untouched,
# and the separators, words and marks the patterns look for.
_pieces = st.sampled_from(
    ["/", ".", "-", "~", "_", "a", "Z", "9", "é", "token", "key", "Bearer", "code", "cookie",
     "authorization", "@", "%40", "=", ":", " ", "\t", "?", "&", "example.org", "ada"]
)  # fmt: skip


@given(st.lists(_pieces, max_size=12).map("".join))
def test_the_fast_path_for_plain_text_changes_no_result(text: str) -> None:
    # Text of word characters, `/`, `.`, `-` and `~` skips the patterns; any
    # text must come out as if every pattern had been tried.
    assert scrub(text) == _redact(text)
