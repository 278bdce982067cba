"""Keep personal data and secrets out of log lines.

Applied to every string a log line carries (message, exception text, extra
fields), whichever logger produced it: ours, the HTTP server's or the app's.
Over-redaction is acceptable; a leaked address or token is not.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
EMAIL_REDACTED = "[email]"

# The local part takes RFC 5322 atext except `/ = ? '`, which in log lines
# nearly always delimit a path, a query or a quoted value rather than belong
# to an address; `%40` catches URL-encoded addresses in query strings. The
# domain may be an address literal (`bob@[192.0.2.7]`, `[IPv6:2001:db8::1]`,
# RFC 5321 §4.1.3), URL-encoded too.
_EMAIL = re.compile(
    r"[\w.!#$%&*+^`{|}~-]+(?:@|%40)"
    r"(?:\[[\w.:-]+\]|%5[Bb][\w.:%-]+?%5[Dd]|[\w-]+(?:\.[\w-]+)*)",
    re.UNICODE,
)

# A header or field whose whole value is a credential.
_CREDENTIAL_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bset-cookie|\bcookie|\bx-api-key|\bx-amz-security-token)"
    r"(?P<sep>['\"]?\s*[:=]\s*['\"]?)(?P<value>[^'\"\r\n]+)",
    re.IGNORECASE,
)

# `name=value` or `"name": "value"` where the name says the value is secret:
# query strings, form bodies, JSON, repr() of dicts.
_SECRET_FIELD = re.compile(
    r"(?P<name>[\w.-]*(?:token|secret|passw|pwd|api[_-]?key|apikey|signature|credential"
    r"|session|client[_-]?id|(?<!exit )(?<!status )\bcode\b|\bsig\b|\bkey\b)[\w.-]*)"
    r"(?P<sep>['\"]?\s*[:=]\s*['\"]?)(?P<value>[^\s&;,'\"#)}\]]+)",
    re.IGNORECASE,
)

_BEARER = re.compile(r"\b(Bearer|Basic|Digest|AWS4-HMAC-SHA256)\s+[^\s'\",]+", re.IGNORECASE)

# Word characters, `/`, `.`, `-` and `~` only: no `@`, separator or space that
# any pattern above needs, so nothing to remove (most access-log paths).
_INERT = re.compile(r"[\w/.~-]*")


# Substrings without which a pattern cannot match. Checking them first keeps
# scrubbing an ordinary line (an access-log path) to about a microsecond, where
# running every pattern cost 8 us: a third of the price of a log line.
_CREDENTIAL_HINTS = ("authorization", "cookie", "api-key", "security-token")
_BEARER_HINTS = ("bearer", "basic", "digest", "aws4-hmac")
_SECRET_HINTS = (
    "token", "secret", "passw", "pwd", "key", "signature", "credential", "session",
    "client", "code", "sig",
)  # fmt: skip


def scrub(text: str) -> str:
    """Return `text` with email addresses, credentials and secret values replaced."""
    if _INERT.fullmatch(text):
        return text
    return _redact(text)


def _redact(text: str) -> str:
    lower = text.lower()
    if any(hint in lower for hint in _CREDENTIAL_HINTS):
        text = _CREDENTIAL_HEADER.sub(lambda m: m["name"] + m["sep"] + REDACTED, text)
    if any(hint in lower for hint in _BEARER_HINTS):
        text = _BEARER.sub(lambda m: m[1] + " " + REDACTED, text)
    if ("=" in text or ":" in text) and any(hint in lower for hint in _SECRET_HINTS):
        text = _SECRET_FIELD.sub(_redact_field, text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(EMAIL_REDACTED, text)
    return text


def _redact_field(match: re.Match[str]) -> str:
    if match["value"] == REDACTED:
        return match[0]
    return match["name"] + match["sep"] + REDACTED
