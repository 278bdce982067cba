"""SPF, DKIM and DMARC for received mail (authheaders, on pyspf and dkimpy).

The checks run in a thread (they block on DNS) while the client waits for
its reply to DATA. Their verdict is added to the message as our own
Authentication-Results header (RFC 8601) and given to handlers as a dict:

    {"spf": "pass", "spf_domain": "sender.example", "dkim": "pass",
     "dkim_domains": "sender.example", "dmarc": "fail", "dmarc_policy": "reject",
     "from_domain": "sender.example"}

Results are RFC 8601's words: pass, fail, softfail, neutral, none,
temperror, permerror. A DNS failure makes them `temperror`, never a refusal.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import authheaders
import authres
import dns.exception
from authheaders import dmarc_lookup
from publicsuffix2 import PublicSuffixList

log = logging.getLogger("shoestring.mail.inbound")


@functools.cache
def _suffix_list(location: str) -> Any:
    with open(location, encoding="utf-8") as lines:
        return PublicSuffixList(lines)


def _org_domain(location: Any, domain: str) -> Any:
    return _suffix_list(str(location)).get_public_suffix(domain)


# authheaders parses the whole Public Suffix List (300 ms of CPU here) for each
# DMARC lookup that walks up to the organizational domain; parse it once.
dmarc_lookup.get_org_domain_from_suffix_list = _org_domain

METHODS = ("spf", "dkim", "dmarc")


class Unreadable(Exception):
    """The checks could not read the message (its headers are not RFC 5322's)."""


def authenticate(
    raw: bytes, *, authserv_id: str, ip: str, mail_from: str, helo: str
) -> tuple[bytes, dict[str, str]]:
    """Our Authentication-Results header line (with CRLF) and the results as a dict.

    Unreadable when the checks fail on the message itself: such a message
    could otherwise pass unjudged by DMARC, so it must be refused.
    """
    mail_from = _ascii_address(mail_from)
    try:
        header = authheaders.authenticate_message(
            raw, authserv_id, spf=True, dkim=True, dmarc=True,
            ip=ip, mail_from=mail_from or None, helo=helo or None,
        )  # fmt: skip
    except (dns.exception.DNSException, OSError) as exc:
        log.warning("authentication checks failed for want of DNS: %s", type(exc).__name__)
        return unavailable(authserv_id)
    except Exception as exc:
        # The type only: the message may quote the sender's headers.
        log.info("authentication checks could not read a message: %s", type(exc).__name__)
        raise Unreadable from None
    header = _quote_properties(header, {"smtp.mailfrom": mail_from, "smtp.helo": helo})
    results = parse(header)
    return header.encode("utf-8", "replace") + b"\r\n", results


# RFC 8601 §2.2: a property value is a token, a quoted-string or [local-part@]domain-name.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+(@[A-Za-z0-9.-]+)?")


def _quote_properties(header: str, values: dict[str, str]) -> str:
    """`header` with the values we gave the checks as quoted-strings where they are no
    plain token or domain: an address literal (`a@[192.0.2.1]`, RFC 5321 §4.1.3, allowed
    in a reverse-path and in EHLO) is neither, and our own header must parse."""
    for name, value in values.items():
        if value and not _PLAIN_VALUE.fullmatch(value):
            quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            header = header.replace(f"{name}={value}", f"{name}={quoted}")
    return header


def _ascii_address(address: str) -> str:
    """An SMTPUTF8 envelope sender as SPF can check it: the domain in IDNA (A-labels).

    SPF judges the domain; a local part in UTF-8 is kept out of the checks (as
    `postmaster`, RFC 7208 §4.3), so our own Authentication-Results stays ASCII.
    """
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    return f"{local if local.isascii() else 'postmaster'}@{ascii_domain}"


def unavailable(authserv_id: str) -> tuple[bytes, dict[str, str]]:
    """What `authenticate` answers when DNS cannot: every method a temporary error."""
    verdict = "; ".join(f"{method}=temperror" for method in METHODS)
    header = f"Authentication-Results: {authserv_id}; {verdict}"
    return header.encode() + b"\r\n", parse(header)


def parse(header: str) -> dict[str, str]:
    parsed = authres.AuthenticationResultsHeader.parse(header)
    results = {method: "none" for method in METHODS}
    dkim_domains: list[str] = []
    for result in parsed.results:
        properties = {f"{p.type}.{p.name}": str(p.value) for p in result.properties}
        method = str(result.method)
        if method == "spf":
            results["spf"] = str(result.result)
            mailfrom = properties.get("smtp.mailfrom") or properties.get("smtp.helo", "")
            results["spf_domain"] = mailfrom.rpartition("@")[2].lower()
        elif method == "dkim":
            if str(result.result) == "pass" and "header.d" in properties:
                dkim_domains.append(properties["header.d"].lower())
            if results["dkim"] != "pass":  # one good signature is enough
                results["dkim"] = str(result.result)
        elif method == "dmarc":
            results["dmarc"] = str(result.result)
            results["dmarc_policy"] = properties.get("policy.dmarc", "")
            results["from_domain"] = properties.get("header.from", "").lower()
    results["dkim_domains"] = " ".join(dkim_domains)
    return results


def use_nameservers(servers: list[str]) -> None:
    """Send the checks' DNS queries to these servers (`ip`, or IPv4 `ip:port`), process-wide."""
    import dns.resolver

    addresses, ports = [], set()
    for server in servers:
        host, port = server.split(":") if server.count(":") == 1 else (server, "53")
        addresses.append(host)
        ports.add(int(port))
    if len(ports) > 1:
        raise ValueError("mail.inbound.nameservers must all use one port")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = addresses
    resolver.port = ports.pop()
    resolver.lifetime = 5.0
    dns.resolver.default_resolver = resolver
