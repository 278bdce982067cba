"""Which recipients the SMTP server accepts: ours only, in plain form only.

An open relay is made of the tricks that turn "our domain" into "anyone's":
the percent hack (`a%b@us`), bang paths (`b!a@us`), quoted local parts
(`"x@other"@us`), source routes (`<@us:x@other>`) and address literals
(`x@[192.0.2.1]`). Each is refused with its own reply, before any app code
sees the address.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# RFC 5322 dot-atom, without '%' and '!' (routing characters to some MTAs), and
# with the non-ASCII characters SMTPUTF8 allows (RFC 6531), but for C1 controls.
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~\u00a0-\ud7ff\ue000-\U0010ffff-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")


class Refused(Exception):
    """An SMTP reply refusing the command, e.g. `550 5.7.1 Relaying denied`."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)


def our_recipient(address: str, domains: Collection[str]) -> str:
    """`address` with its domain lower-cased, if it is a plain address at one of `domains`."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise Refused("553 5.1.3 Recipient address syntax: use local-part@domain")
    if local.startswith('"'):
        raise Refused("553 5.1.3 Quoted local parts are not accepted")
    if "%" in local or "!" in local:
        raise Refused("553 5.1.3 Routing characters (% !) are not accepted in local parts")
    if domain.startswith("["):
        raise Refused("553 5.1.3 Address literals are not accepted")
    if (
        "@" in local
        or not _LOCAL.match(local)
        or len(local.encode()) > 64
        or len(address.encode()) > 254
    ):
        raise Refused("553 5.1.3 Recipient address syntax")
    domain = domain.lower().rstrip(".")
    if domain not in {d.lower() for d in domains}:
        raise Refused("550 5.7.1 Relaying denied: we accept mail only for our own domains")
    return f"{local}@{domain}"
