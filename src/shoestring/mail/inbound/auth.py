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


def authenticate(
    raw: bytes, *, authserv_id: str, ip: str, mail_from: str, helo: str
) -> tuple[bytes, dict[str, str]]:
    """Our Authentication-Results header line (with CRLF) and the results as a dict."""
    try:
        header = authheaders.authenticate_message(
            raw, authserv_id, spf=True, dkim=True, dmarc=True,
            ip=ip, mail_from=mail_from or None, helo=helo or None,
        )  # fmt: skip
    except (dns.exception.DNSException, OSError, ValueError, LookupError) as exc:
        log.warning("authentication checks failed for want of DNS: %s", type(exc).__name__)
        return unavailable(authserv_id)
    results = parse(header)
    return header.encode("utf-8", "replace") + b"\r\n", results


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
