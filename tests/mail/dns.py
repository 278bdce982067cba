"""A real DNS server on loopback for mail tests (MX, TXT for SPF/DKIM/DMARC/MTA-STS)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest


class LoopbackDNS:
    """A UDP DNS server on 127.0.0.1 answering from `records`, NXDOMAIN for unknown names."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent = False  # True: read queries, answer none (a DNS outage)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            if self.silent:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if answers := self.records.get((name, rdtype)):
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", rdtype, answers)
                )
            elif all(known != name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._socket.sendto(response.to_wire(), peer)

    def resolver(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 2.0
        return resolver

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def zone() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def default_dns(zone: LoopbackDNS, monkeypatch: pytest.MonkeyPatch) -> LoopbackDNS:
    """`zone`, also as the resolver libraries use by default (pyspf, dkimpy, authheaders)."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = zone.port
    resolver.lifetime = 2.0
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    return zone
