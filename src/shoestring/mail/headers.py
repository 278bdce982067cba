"""Header surgery on raw messages, leaving every other byte (and DKIM signatures) alone."""

from __future__ import annotations

import re

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
    ours = authserv_id.lower().encode()
    kept = []
    for field in fields:
        name = field_name(field)
        if name.startswith("x-shoestring-"):
            continue
        if name == "authentication-results":
            value = field.split(b":", 1)[1].strip().lower()
            if value.startswith(ours) and value[len(ours) : len(ours) + 1] in (
                b";",
                b" ",
                b"\t",
                b"\r",
                b"",
            ):
                continue
        kept.append(field)
    return b"".join(kept) + rest


def has_bare_line_ending(raw: bytes) -> bool:
    """A LF without CR before it, or a CR without LF after it (the stuff of SMTP smuggling)."""
    pairs = raw.count(b"\r\n")  # each holds one CR and one LF: any other is bare
    return raw.count(b"\n") != pairs or raw.count(b"\r") != pairs
