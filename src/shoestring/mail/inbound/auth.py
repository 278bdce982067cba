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

import logging

import authheaders
import authres
import dns.exception

log = logging.getLogger("shoestring.mail.inbound")

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
        verdict = "; ".join(f"{method}=temperror" for method in METHODS)
        header = f"Authentication-Results: {authserv_id}; {verdict}"
    results = parse(header)
    return header.encode("utf-8", "replace") + b"\r\n", results


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
