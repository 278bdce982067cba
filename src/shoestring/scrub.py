"""Keep personal data and secrets out of log lines.

Applied to every string a log line carries (message, exception text, extra
fields), whichever logger produced it: ours, the HTTP server's or the app's.
Over-redaction is acceptable; a leaked address or token is not.

Scrubbing runs on the event loop for every access line, so it must take time
linear in the text whatever the text is: Python's `re` backtracks, and one
pattern that rescanned a run of word characters from each position in it
(`[\\w.-]*token[\\w.-]*=`) made a 2 KB request line cost 12 s. So every pattern
here starts on a cheap literal (a separator, `@`, `://`, `eyJ`) or at the start
of a run, uses possessive or bounded quantifiers, and what it scans is either
bounded or consumed by the match. Lines longer than MAX_LINE_CHARS are cut
first, to bound the constant too. tests/test_scrub.py times hostile inputs.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
EMAIL_REDACTED = "[email]"
TRUNCATED = "…[truncated]"
# Far longer than any line worth reading (a request line, a SQL statement, an
# exception message), short enough that scrubbing the worst of them (`a@a@…`,
# thousands of addresses) costs about 15 ms.
MAX_LINE_CHARS = 16 * 1024

# Names whose value is secret: any name containing one of these...
_SECRET_SUBSTRINGS = (
    "token", "secret", "passw", "passcode", "pwd", "apikey", "api_key", "api-key",
    "signature", "credential", "session", "authorization", "cookie", "client_id",
    "client-id", "clientid",
)  # fmt: skip
# ...or one of these as a word of it (`private_key`, `verificationCode`,
# `X-Amz-Sig`), but not `keyboard` or `zipcode`.
_SECRET_WORDS = frozenset({"key", "code", "sig", "pass", "pin", "otp", "jwt", "auth", "csrf"})
# A `code` after one of these is a number everyone may read.
_PUBLIC_CODES = frozenset(
    {"exit", "status", "error", "http", "response", "return", "country", "currency", "language"}
)
# Words of a name: `X-Amz-Signature`, `verification_code`, `apiKey`, `APIKey`.
_WORD = re.compile(r"[A-Z]{2,}+(?![a-z])|[A-Z]{2,}(?=[A-Z][a-z])|[A-Z]?[a-z]++|[A-Z]|[0-9]++")
# Headers whose whole value (to the end of the line) is a credential.
_CREDENTIAL_HEADERS = (
    "authorization", "cookie", "x-api-key", "x-amz-security-token",
)  # fmt: skip


def is_secret_name(name: str) -> bool:
    """True if a field, parameter or header called `name` holds a secret value."""
    lower = name.lower()
    if any(part in lower for part in _SECRET_SUBSTRINGS):
        return True
    words = [word.lower() for word in _WORD.findall(name)]
    return any(
        word in _SECRET_WORDS and not (word == "code" and i and words[i - 1] in _PUBLIC_CODES)
        for i, word in enumerate(words)
    )


# `name` then a separator: `name=`, `name: `, `"name": "`, `'name', b'` (a
# header tuple's repr), `\"name\": \"` (JSON inside a JSON string) and `%3D`
# (`=` URL-encoded once or twice, in a parameter's value). The name starts a
# run of name characters and takes all of it, so no run is scanned twice.
_FIELD = re.compile(
    r"(?<![\w.-])(?P<name>[\w.-]++)"
    r"(?P<sep>\\{0,2}[\"']?[ \t]{0,8}(?:[:=]|%(?:25)?3[Dd])[ \t]{0,8}(?:b?\\{0,2}[\"'])?"
    r"|\\{0,2}[\"'][ \t]{0,8},[ \t]{0,8}b?\\{0,2}[\"'])"
)
# What a name run after a `%` starts with: the rest of the escape.
_ESCAPE_TAIL = re.compile(r"\A(?:25)?[0-9A-Fa-f]{2}")
# A quoted value up to its closing unescaped quote (or the end of the line).
_QUOTED_BODY = {
    '"': re.compile(r'(?:[^"\\\n]++|\\.)*+'),
    "'": re.compile(r"(?:[^'\\\n]++|\\.)*+"),
}
# An unquoted value: to the next `&`, whitespace or quote; after `%3D`, also to
# the next `%26` (an `&` encoded as the `=` was); a header's, to the end of the line.
_PLAIN_VALUE = re.compile(r"[^&\s\"']*+")
_ENCODED_VALUE = re.compile(r"(?:[^&\s\"'%]++|%(?!(?:25)?26))*+")
_HEADER_VALUE = re.compile(r"[^'\"\r\n]*+")
# Given back from the end of an unquoted value: `{'code': 200}`, `(token=x)`.
_CLOSING_MARKS = ",;)}]>"
# A value starting with one of these is a structure, or was redacted already.
_OPENING_MARKS = ("{", "[", "(", "<")

_BEARER = re.compile(
    r"(?<![\w-])(?P<scheme>Bearer|Basic|Digest|AWS4-HMAC-SHA256)[ \t]++(?P<value>[^\s'\",]++)",
    re.IGNORECASE,
)

# A JSON web token: three base64url segments, the first a JSON object (`{"`).
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+")

# `scheme://user:password@host`: the password runs to the last `@` before the
# host, since passwords in the wild hold `/` and `@` unencoded; `host:8080/`
# is a port.
_URL_PASSWORD = re.compile(
    r"(?P<head>://[^\s:/?#@\[\]\"'<>]{0,64}+:)(?![0-9]{1,5}+(?:[/?#\s\"'<>]|$))"
    r"[^\s@\"'<>]{1,256}+@(?:[^\s@/?#\"'<>]{0,256}+@)*+"
)

# An email address is found at its `@` (or `%40`, or `%2540` when encoded
# twice) and read outward. RFC 5321 §4.5.3.1 bounds the local part to 64
# octets and the domain to 255.
_AT = re.compile(r"@|%(?:25)?40")
_LOCAL_PART_MAX = 64
# RFC 5322 atext but `=` and `?`, which in log lines delimit a query rather
# than belong to an address. `/` is dropped where the run starts with one (a path).
_LOCAL_PUNCT = frozenset("_.!#$%&*+^`{|}~'/-")
_DOMAIN = re.compile(
    r"\[[\w.:-]{1,253}+\]"  # an address literal, RFC 5321 §4.1.3: bob@[192.0.2.7]
    r"|%5[Bb](?:[\w.:-]|%3[Aa]){1,253}+%5[Dd]"  # the same, URL-encoded
    r"|[\w-][\w.-]{0,254}+"
)

# Word characters, `/`, `.`, `-` and `~` only: no `@`, separator or space that
# any pattern above needs, so nothing to remove (most access-log paths), unless
# it holds a JSON web token.
_INERT = re.compile(r"[\w/.~-]*+")

# Substrings without which a pass cannot match. Checking them first keeps
# scrubbing an ordinary line (an access-log path) to about a microsecond, where
# running every pattern cost 8 us: a third of the price of a log line.
_BEARER_HINTS = ("bearer", "basic", "digest", "aws4-hmac")
_SECRET_HINTS = (
    "token", "secret", "pass", "pwd", "key", "signature", "credential", "session",
    "client", "code", "sig", "auth", "cookie", "pin", "otp", "jwt", "csrf",
)  # fmt: skip
_SEPARATORS = ("=", ":", "%3d", ",")


def scrub(text: str) -> str:
    """Return `text` with email addresses, credentials and secret values replaced.

    A line longer than MAX_LINE_CHARS is cut to that length, and ends in
    TRUNCATED, before it is scrubbed.
    """
    if len(text) > MAX_LINE_CHARS:
        return "\n".join(_scrub_line(line) for line in text.split("\n"))
    if _INERT.fullmatch(text) and "eyJ" not in text:
        return text
    return _redact(text)


def _scrub_line(line: str) -> str:
    # No pattern reaches across a line, so lines are scrubbed one by one.
    if len(line) > MAX_LINE_CHARS:
        return _redact(line[:MAX_LINE_CHARS]) + TRUNCATED
    return _redact(line)


def _redact(text: str) -> str:
    # Fields first: they redact a value whole, which a pass before them could
    # have cut into pieces (`token=ab[redacted]`).
    lower = text.lower()
    if any(sep in lower for sep in _SEPARATORS) and any(hint in lower for hint in _SECRET_HINTS):
        text = _redact_fields(text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED + "@", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if any(hint in lower for hint in _BEARER_HINTS):
        text = _BEARER.sub(_redact_credential, text)
    if "@" in text or "%40" in text or "%2540" in text:
        text = _redact_emails(text)
    return text


def _redact_fields(text: str) -> str:
    pieces: list[str] = []
    done = 0  # text before this is in pieces
    for match in _FIELD.finditer(text):
        if match.start() < done or not _names_secret(text, match):
            continue
        start, end = _value_span(text, match)
        if start < end:
            pieces += (text[done:start], REDACTED)
            done = end
    return "".join(pieces) + text[done:] if pieces else text


def _names_secret(text: str, match: re.Match[str]) -> bool:
    name, start = match["name"], match.start()
    if start and text[start - 1] == "%":
        # `%3Fkey%3D`, `%253Fkey%253D`: the `3F`, `253F` belong to the `%`.
        name = _ESCAPE_TAIL.sub("", name, count=1)
    if name.lower() == "code":
        before = text[max(0, start - 12) : start].split()
        if before and before[-1].lower() in _PUBLIC_CODES:  # "exit code: 1"
            return False
    return is_secret_name(name)


def _value_span(text: str, match: re.Match[str]) -> tuple[int, int]:
    """Where the value after a secret name and its separator starts and ends."""
    start, sep = match.end(), match["sep"]
    quote = sep[-1]
    if quote in "\"'":
        if sep[-2:-1] == "\\":  # `\"` opened it, `\"` closes it
            end = text.find(quote, start)
            end = len(text) if end < 0 else end
            while end > start and text[end - 1] == "\\":
                end -= 1
            return start, end
        value = _QUOTED_BODY[quote].match(text, start)
        assert value is not None  # a starred pattern always matches
        return start, value.end()
    if text.startswith(_OPENING_MARKS, start):
        return start, start
    if match["name"].lower().endswith(_CREDENTIAL_HEADERS):
        value = _HEADER_VALUE.match(text, start)
    else:
        value = (_ENCODED_VALUE if "%" in sep else _PLAIN_VALUE).match(text, start)
    assert value is not None
    return start, start + len(value[0].rstrip(_CLOSING_MARKS))


def _redact_credential(match: re.Match[str]) -> str:
    if match["value"].startswith(REDACTED):
        return match[0]
    return match["scheme"] + " " + REDACTED


def _redact_emails(text: str) -> str:
    pieces: list[str] = []
    done = 0  # text before this is in pieces, and no address reaches back into it
    for at in _AT.finditer(text):
        if at.start() < done:
            continue
        domain = _DOMAIN.match(text, at.end())
        if domain is None:
            continue
        end = at.end() + len(domain[0].rstrip("."))
        start = _local_part_start(text, at.start(), done)
        if start < at.start() and end > at.end():
            pieces += (text[done:start], EMAIL_REDACTED)
            done = end
    return "".join(pieces) + text[done:] if pieces else text


def _local_part_start(text: str, at: int, floor: int) -> int:
    """Where the local part ending at `at` starts (`at` itself if there is none)."""
    floor = max(floor, at - _LOCAL_PART_MAX - 2)
    if at > floor and text[at - 1] == '"':  # "ada lovelace"@example.org
        opening = text.rfind('"', floor, at - 1)
        if opening >= 0 and "\n" not in text[opening:at]:
            return opening - 1 if opening > floor and text[opening - 1] == "\\" else opening
    floor = max(floor, at - _LOCAL_PART_MAX)
    start = at
    while start > floor and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_PUNCT):
        start -= 1
    if text.startswith("/", start):  # /users/ada@example.org: the address is the last segment
        start = text.rfind("/", start, at) + 1
    while start < at and text[start] == "'":  # 'ada@example.org': a repr's quote
        start += 1
    return start
