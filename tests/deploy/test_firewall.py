"""The rendered firewall, loaded into a network namespace of its own, probed from outside.

A host of its own on this machine (`ip netns` + a veth pair): the ruleset
`shoestring deploy` installs is loaded there with nft, a listener waits on
each port a box like ours may have open, and the test connects from the
other end of the wire, as the internet would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoestring.deploy import render
from tests.deploy.test_render import need, settings

# ssh, smtp, http, https; the app's release ports, PostgreSQL, Redis, Caddy's admin API
OPEN_ON_A_BOX = [22, 25, 80, 443, 2019, 5432, 6379, 8001, 8002]

LISTEN = """
import socket, sys, time
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    socks.append(s)
print("listening", flush=True)
time.sleep(120)
"""


class Namespace:
    """A network namespace wired to this one: `inside` is its address, `outside` ours."""

    def __init__(self, tmp_path: Path) -> None:
        number = os.getpid() % 200 + 20  # xdist workers must not share a wire
        self.name = f"shoestring-fw-{os.getpid()}"
        self.outside, self.inside = f"10.251.{number}.1", f"10.251.{number}.2"
        self.host_end, self.far_end = f"sfw{os.getpid()}a"[:15], f"sfw{os.getpid()}b"[:15]
        self.tmp_path = tmp_path

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def within(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def create(self) -> None:
        self.ip("netns", "add", self.name)
        self.ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.far_end)
        self.ip("link", "set", self.far_end, "netns", self.name)
        self.ip("addr", "add", f"{self.outside}/30", "dev", self.host_end)
        self.ip("link", "set", self.host_end, "up")
        for args in (
            ["addr", "add", f"{self.inside}/30", "dev", self.far_end],
            ["link", "set", self.far_end, "up"],
            ["link", "set", "lo", "up"],
        ):
            self.ip("netns", "exec", self.name, "ip", *args)

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_end], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[Namespace]:
    need("nft", "nftables")
    need("ip", "iproute2")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the firewall test needs root under CI (network namespaces)")
        pytest.skip("network namespaces need root")
    space = Namespace(tmp_path)
    try:
        space.create()
        yield space
    finally:
        space.delete()


def reachable(address: str, port: int) -> bool:
    """A TCP connection from outside opens (a dropped SYN times out)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("inbound_mail", [False, True])
def test_only_ssh_web_and_with_inbound_mail_smtp_get_through(
    namespace: Namespace, tmp_path: Path, inbound_mail: bool
) -> None:
    rules = tmp_path / "rules.nft"
    rules.write_text(render.firewall(settings(tmp_path, inbound_mail=inbound_mail), ssh_ports=[22]))
    listener = subprocess.Popen(
        namespace.within(sys.executable, "-c", LISTEN, *map(str, OPEN_ON_A_BOX)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        before = {port for port in OPEN_ON_A_BOX if reachable(namespace.inside, port)}
        assert before == set(OPEN_ON_A_BOX)  # without the firewall, everything answers

        loaded = subprocess.run(
            namespace.within("nft", "-f", str(rules)), capture_output=True, text=True
        )
        assert loaded.returncode == 0, loaded.stderr
        after = {port for port in OPEN_ON_A_BOX if reachable(namespace.inside, port)}
        assert after == ({22, 25, 80, 443} if inbound_mail else {22, 80, 443})

        # The box's own connections out (apt, ACME, mail) and their answers still flow.
        with socket.create_server((namespace.outside, 0)) as server:
            port = server.getsockname()[1]
            dialled = subprocess.run(
                namespace.within(
                    sys.executable, "-c",
                    f"import socket; socket.create_connection(('{namespace.outside}', {port}), 2)"
                    ".sendall(b'hi')",
                ),
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert dialled.returncode == 0, dialled.stderr
            server.settimeout(2)
            connection, _ = server.accept()
            with connection:
                assert connection.recv(2) == b"hi"
    finally:
        listener.kill()
        listener.wait()
