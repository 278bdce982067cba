"""Header surgery on raw messages, leaving every other byte (and DKIM signatures) alone."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import getaddresses

_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines and CRLFs) and the rest (blank line + body)."""
    end = raw.find(b"\r\n\r\n")
    head, rest = (raw, b"") if end < 0 else (raw[: end + 2], raw[end + 2 :])
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line  # a folded continuation
        else:
            fields.append(line)
    return fields, rest


def field_name(field: bytes) -> str:
    match = _FIELD.match(field)
    return match.group(1).decode("ascii").lower() if match else ""


def strip_ours(raw: bytes, authserv_id: str) -> bytes:
    """Drop X-Shoestring-* fields and Authentication-Results claiming to be from `authserv_id`.

    A client must not be able to forge what our own checks say (RFC 8601 §5).
    """
    fields, rest = split(raw)
    ours = _normalized(authserv_id)
    kept = []
    for field in fields:
        name = field_name(field)
        if name.startswith("x-shoestring-"):
            continue
        if name == "authentication-results" and _authserv_id(field) == ours:
            continue
        kept.append(field)
    return b"".join(kept) + rest


_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)", re.DOTALL)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_AUTHSERV_ID = re.compile(r"[^\s;()]+")


def _authserv_id(field: bytes) -> str:
    """The authserv-id an Authentication-Results field names, as a reader would compare it.

    RFC 8601 §2.2: it is a `value`, a token or a quoted-string; comments and folding
    may surround it. A reader (a mail client's filter, a later check) may decode an
    encoded word in it, and a domain's trailing dot names the same host: all of
    those are ours when they come to our name (§5: remove what claims to be ours).
    """
    value = field.split(b":", 1)[1].decode("utf-8", "replace")
    while True:  # nested comments: innermost first
        unnested = _COMMENT.sub(" ", value)
        if unnested == value:
            break
        value = unnested
    value = value.lstrip()
    quoted = _QUOTED.match(value)
    if quoted:
        found = quoted.group(1)
    else:
        match = _AUTHSERV_ID.search(value)
        found = match.group(0) if match else ""
    # A quoted-pair (and a lenient reader's backslash in a token) stands for its character.
    return _normalized(re.sub(r"\\(.)", r"\1", found, flags=re.DOTALL))


def _normalized(authserv_id: str) -> str:
    """Encoded words decoded, case folded, no surrounding space or trailing dot."""
    if "=?" in authserv_id:
        # Not a valid encoded word: compared as written.
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            authserv_id = str(make_header(decode_header(authserv_id)))
    return authserv_id.strip().rstrip(".").lower()


def one_plain_from(raw: bytes) -> str | None:
    """The address of the message's one From field, or None when it has not exactly one
    address written plainly (no From, two of them, a list, or an address hidden in an
    RFC 2047 encoded word). DMARC judges the address found this plain way, and what a
    handler shows must be that same address."""
    fields, _ = split(raw)
    if not fields or not _FIELD.match(fields[0]):
        return None  # the message must begin with a header field
    values = [f.split(b":", 1)[1] for f in fields if field_name(f) == "from"]
    if len(values) != 1:
        return None
    text = values[0].decode("utf-8", "replace")
    plain = [address for _, address in getaddresses([text]) if address]
    decoded = email.message_from_string(f"From:{text}\r\n\r\n", policy=email.policy.default)
    try:
        parsed = decoded["From"].addresses
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if len(plain) != 1 or len(parsed) != 1 or "@" not in plain[0]:
        return None
    if parsed[0].addr_spec.lower() != plain[0].lower():
        return None
    return plain[0]


def has_bare_line_ending(raw: bytes) -> bool:
    """A LF without CR before it, or a CR without LF after it (the stuff of SMTP smuggling)."""
    pairs = raw.count(b"\r\n")  # each holds one CR and one LF: any other is bare
    return raw.count(b"\n") != pairs or raw.count(b"\r") != pairs
