"""Delivery straight to the recipients' mail servers (`mail.transport = "direct"`).

For each recipient domain: its MX hosts by preference, or the domain itself
when it publishes none (RFC 5321 §5.1); a null MX (RFC 7505) means it takes no
mail. Port 25 and STARTTLS whenever offered: verified when the certificate
allows it, else unverified, else plaintext (opportunistic TLS, RFC 7435) —
unless the domain publishes an MTA-STS policy in `enforce` mode (RFC 8461):
then only the MX hosts the policy names, and only over verified TLS.

A 4xx or an unreachable domain is a TemporaryFailure, a 5xx a
PermanentFailure. One message can be accepted by some domains and deferred
by others (greylisting does that): the transport remembers who has it, so a
retry goes only to the rest. That memory lives in the process; after a
restart a retry may reach someone twice (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.resolver

from shoestring.mail.errors import PermanentFailure, TemporaryFailure
from shoestring.mail.ledger import Ledger
from shoestring.mail.transports import without_addresses

log = logging.getLogger("shoestring.mail")

PolicyFetcher = Callable[[str], Awaitable[str]]
"""Returns the body of a domain's MTA-STS policy file; raises OSError or ValueError when
there is none to be had."""

# RFC 8461 §3.2: max_age is at most a year. §3.3: a policy is small; 64 KiB is plenty.
MAX_POLICY_AGE = 31_557_600
MAX_POLICY_SIZE = 64 * 1024

_POLICY_ID = re.compile(r"[A-Za-z0-9]{1,32}")


@dataclass(frozen=True, slots=True)
class STSPolicy:
    """An MTA-STS policy (RFC 8461 §3.2)."""

    id: str
    mode: str  # "enforce", "testing" or "none"
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """Whether the MX `host` matches one of the policy's `mx:` patterns (§4.1)."""
        host = host.rstrip(".").lower()
        for pattern in (p.rstrip(".").lower() for p in self.mx):
            if pattern.startswith("*."):
                # A wildcard stands for exactly one leftmost label.
                label, _, rest = host.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_policy(text: str, policy_id: str) -> STSPolicy | None:
    """The policy in a `mta-sts.txt` body, or None when it is not a valid STSv1 policy."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), []).append(value.strip())
    mode = fields.get("mode", [""])[0]
    max_age = fields.get("max_age", [""])[0]
    if fields.get("version") != ["STSv1"] or mode not in ("enforce", "testing", "none"):
        return None
    if not max_age.isdigit() or (mode != "none" and not fields.get("mx")):
        return None
    return STSPolicy(
        id=policy_id,
        mode=mode,
        mx=tuple(fields.get("mx", [])),
        max_age=min(int(max_age), MAX_POLICY_AGE),
    )


def parse_sts_record(texts: list[str]) -> str | None:
    """The policy id of a domain's `_mta-sts` TXT records, or None without exactly one valid."""
    ids = []
    for text in texts:
        if not text.startswith("v=STSv1"):
            continue
        fields = {}
        for part in text.split(";"):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        ids.append(fields.get("id", ""))
    if len(ids) != 1 or not _POLICY_ID.fullmatch(ids[0]):
        return None  # §3.1: several records, or a bad id, count as no policy
    return ids[0]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # RFC 8461 §3.3: redirects MUST NOT be followed


def _fetch_policy_now(domain: str, timeout: float) -> str:
    opener = urllib.request.build_opener(
        _NoRedirects, urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    with opener.open(url, timeout=timeout) as response:
        if response.headers.get_content_type() != "text/plain":
            raise ValueError(f"{url} is not text/plain")
        body: bytes = response.read(MAX_POLICY_SIZE + 1)
    if len(body) > MAX_POLICY_SIZE:
        raise ValueError(f"{url} is larger than {MAX_POLICY_SIZE} bytes")
    return body.decode()


def https_policy_fetcher(*, timeout: float) -> PolicyFetcher:
    """Fetches `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` over verified TLS, in a thread."""

    async def fetch(domain: str) -> str:
        return await asyncio.to_thread(_fetch_policy_now, domain, timeout)

    return fetch


@dataclass(frozen=True, slots=True)
class _Refusal:
    permanent: bool
    reason: str


class _HostUnusable(Exception):
    """This MX host could not take the message (unreachable, TLS, greeting); try the next."""


class DirectTransport:
    """Delivers to each recipient domain's own mail servers; see the module docstring."""

    name = "direct"

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        port: int = 25,
        resolver: dns.asyncresolver.Resolver | None = None,
        policy_fetcher: PolicyFetcher | None = None,
        tls_context: ssl.SSLContext | None = None,
        helo_name: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.port = port
        self.resolver = resolver or dns.asyncresolver.Resolver()
        self.policy_fetcher = policy_fetcher or https_policy_fetcher(timeout=min(timeout, 10.0))
        # Verifies certificates: used when a policy requires it, and first otherwise.
        self.tls_context = tls_context or ssl.create_default_context()
        self.helo_name = helo_name
        self._unverified_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._unverified_tls.check_hostname = False
        self._unverified_tls.verify_mode = ssl.CERT_NONE
        self._policies: dict[str, tuple[STSPolicy, float]] = {}
        self._ledger = Ledger()  # who has each part-delivered message

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        attempt = self._ledger.begin(sender, recipients, raw)
        for domain, group in _by_domain(attempt.unsettled).items():
            try:
                refusals = await self._deliver_to_domain(domain, sender, group, raw)
            except TemporaryFailure as exc:
                attempt.defer(f"{domain}: {exc}")
                continue
            except PermanentFailure as exc:
                refusals = dict.fromkeys(group, _Refusal(True, str(exc)))
            for recipient in group:
                refusal = refusals.get(recipient)
                if refusal is None:
                    attempt.delivered(recipient)
                elif refusal.permanent:
                    attempt.refused(recipient, f"{domain}: {refusal.reason}")
                else:
                    attempt.defer(f"{domain}: {refusal.reason}")
        self._ledger.conclude(attempt)

    # -- one domain ------------------------------------------------------------

    async def _deliver_to_domain(
        self, domain: str, sender: str, recipients: list[str], raw: bytes
    ) -> dict[str, _Refusal]:
        """The recipients refused; raises TemporaryFailure when no MX host took the message.

        Failures raised here do not name the domain: `send` puts it in front.
        """
        hosts, implicit = await self._mail_exchangers(domain)
        policy = await self._policy(domain)
        enforce = policy is not None and policy.mode == "enforce"
        if policy is not None and policy.mode != "none":
            allowed = [host for host in hosts if policy.allows(host)]
            if len(allowed) < len(hosts):
                outside = ", ".join(host for host in hosts if host not in allowed)
                log.warning(
                    "MX hosts of %s outside its MTA-STS policy (%s mode): %s",
                    domain,
                    policy.mode,
                    outside,
                )
            if enforce:
                hosts = allowed
            if not hosts:
                raise TemporaryFailure(
                    "none of its MX hosts matches its MTA-STS policy"
                    f" (mx: {', '.join(policy.mx)}), which is in enforce mode; not delivered"
                )
        problems: list[str] = []
        for host in hosts:
            try:
                addresses = await self._addresses(host)
            except _HostUnusable as exc:
                problems.append(f"{host}: {exc}")
                continue
            if not addresses:
                if implicit:
                    raise PermanentFailure("publishes neither an MX record nor an address")
                problems.append(f"{host} has no address")
            for address in addresses:
                try:
                    return await self._deliver_via(host, address, enforce, sender, recipients, raw)
                except _HostUnusable as exc:
                    problems.append(f"{host}: {exc}")
        # A few reasons are enough to act on; a domain may list many hosts.
        raise TemporaryFailure(f"no mail server took it: {'; '.join(problems[:3])}")

    async def _mail_exchangers(self, domain: str) -> tuple[list[str], bool]:
        """MX host names by preference, and whether the domain is its own implicit MX."""
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NoAnswer:
            return [domain], True  # RFC 5321 §5.1: no MX, the domain itself is the host
        except dns.resolver.NXDOMAIN:
            raise PermanentFailure("the domain does not exist") from None
        except dns.exception.DNSException as exc:
            raise TemporaryFailure(f"could not look up its MX records ({exc})") from None
        records = [r for r in answer if isinstance(r, dns.rdtypes.ANY.MX.MX)]
        if any(r.exchange == dns.name.root for r in records):
            raise PermanentFailure("accepts no mail (it publishes a null MX, RFC 7505)")
        # RFC 5321 §5.1: hosts of equal preference are tried in random order.
        secrets.SystemRandom().shuffle(records)
        records.sort(key=lambda r: r.preference)
        return [r.exchange.to_text(omit_final_dot=True) for r in records], False

    async def _addresses(self, host: str) -> list[str]:
        """The host's addresses; empty when DNS says it has none, _HostUnusable when DNS fails."""
        # IPv4 first: many small boxes have no IPv6 route, and each try would time out.
        found: list[str] = []
        failure: dns.exception.DNSException | None = None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as exc:
                failure = exc
                continue
            found.extend(rdata.to_text() for rdata in answer)
        if not found and failure is not None:
            raise _HostUnusable(f"could not look up its address ({failure})")
        return found

    # -- MTA-STS ---------------------------------------------------------------

    async def _policy(self, domain: str) -> STSPolicy | None:
        """The domain's MTA-STS policy: cached for its max_age, refetched when its id changes."""
        now = time.monotonic()
        cached = self._policies.get(domain)
        if cached is not None and cached[1] <= now:
            del self._policies[domain]
            cached = None
        known = cached[0] if cached is not None else None
        policy_id = await self._policy_id(domain)
        if policy_id is None or (known is not None and known.id == policy_id):
            return known  # §5.1: a cached policy holds until it expires, record or not
        try:
            text = await self.policy_fetcher(domain)
        except (OSError, ValueError) as exc:
            log.warning("MTA-STS policy of %s could not be fetched: %s", domain, exc)
            return known
        policy = parse_policy(text, policy_id)
        if policy is None:
            log.warning("MTA-STS policy of %s is not a valid STSv1 policy", domain)
            return known
        self._policies[domain] = (policy, now + policy.max_age)
        return policy

    async def _policy_id(self, domain: str) -> str | None:
        try:
            answer = await self.resolver.resolve(f"_mta-sts.{domain}", "TXT", search=False)
        except dns.exception.DNSException:
            return None
        return parse_sts_record(
            [
                b"".join(rdata.strings).decode("ascii", "replace")
                for rdata in answer
                if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
            ]
        )

    # -- one host --------------------------------------------------------------

    async def _deliver_via(
        self,
        host: str,
        address: str,
        enforce: bool,
        sender: str,
        recipients: list[str],
        raw: bytes,
    ) -> dict[str, _Refusal]:
        # Verified TLS, then unverified, then none: a certificate that does not
        # verify still encrypts, unless MTA-STS enforce requires verification.
        levels = [self.tls_context] if enforce else [self.tls_context, self._unverified_tls, None]
        failure = "no TLS attempted"
        for context in levels:
            client = aiosmtplib.SMTP(
                hostname=address,
                port=self.port,
                timeout=self.timeout,
                local_hostname=self.helo_name,
                start_tls=False,
            )
            try:
                try:
                    await client.connect()
                    await client.ehlo()
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise _HostUnusable(_describe(exc)) from None
                if context is not None and client.supports_extension("starttls"):
                    try:
                        await client.starttls(server_hostname=host, tls_context=context)
                    except (ssl.SSLError, aiosmtplib.SMTPException) as exc:
                        failure = f"STARTTLS failed ({_describe(exc)})"
                        continue
                elif enforce:
                    raise _HostUnusable("offers no STARTTLS, and the MTA-STS policy requires TLS")
                return await _transaction(client, sender, recipients, raw)
            finally:
                await _close(client)
        raise _HostUnusable(failure)


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], raw: bytes
) -> dict[str, _Refusal]:
    try:
        refused, _ = await client.sendmail(sender, recipients, raw)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return {e.recipient: _refusal(e.code, e.message, sender) for e in exc.recipients}
    except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM, DATA, or end of data
        return {recipient: _refusal(exc.code, exc.message, sender) for recipient in recipients}
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # Lost mid-transaction: whether it arrived is unknown, so it is retried.
        raise TemporaryFailure(
            f"connection lost during the transaction ({_describe(exc)})"
        ) from None
    return {r: _refusal(reply.code, reply.message, sender) for r, reply in refused.items()}


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _refusal(code: int, message: str, sender: str) -> _Refusal:
    return _Refusal(500 <= code < 600, without_addresses(f"{code} {message}", keep=sender))


async def _close(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


def _by_domain(recipients: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for recipient in recipients:
        domain = recipient.rpartition("@")[2]
        # IDNA: DNS, the policy URL and the pattern match all use the ASCII form.
        # A name that does not convert is kept as is; its lookup fails with a reason.
        with contextlib.suppress(dns.exception.DNSException, UnicodeError):
            domain = dns.name.from_text(domain).to_text(omit_final_dot=True).lower()
        groups.setdefault(domain, []).append(recipient)
    return groups
