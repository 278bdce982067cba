"""Debian's Pebble as a local ACME CA (see /work/shared/notes/tls-testing.md).

    with Pebble.start(tmp_path) as pebble:
        pebble.directory_url      # acme_ca for Caddy
        pebble.api_root           # PEM that signs Pebble's own HTTPS (acme_ca_root)
        pebble.issuing_root()     # PEM of the root that signs issued certificates

Challenges always validate (PEBBLE_VA_ALWAYS_VALID), so no DNS is needed.
`served_certificate` tells which certificate a TLS server presents, to see
it renewed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def pebble_or_skip() -> str:
    path = shutil.which("pebble")
    if path is None or shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pebble is required under CI: apt-get install pebble")
        pytest.skip("pebble is not installed: apt-get install pebble")
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Pebble:
    def __init__(self, directory: Path, *, acme_port: int, management_port: int) -> None:
        self.directory = directory
        self.acme_port = acme_port
        self.management_port = management_port
        self.api_root = directory / "api-root.pem"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @classmethod
    @contextlib.contextmanager
    def start(cls, directory: Path, *, validity: int = 0) -> Iterator[Pebble]:
        """Run Pebble; `validity` (seconds) makes short-lived certificates, to see renewals."""
        binary = pebble_or_skip()
        directory.mkdir(parents=True, exist_ok=True)
        pebble = cls(directory, acme_port=14000, management_port=15000)
        if not (_port_free(14000) and _port_free(15000)):
            pytest.skip("ports 14000/15000 are taken: another Pebble is running")
        pebble._make_certificates()
        config = directory / "pebble.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{pebble.acme_port}",
                        "managementListenAddress": f"127.0.0.1:{pebble.management_port}",
                        "certificate": str(directory / "api-cert.pem"),
                        "privateKey": str(directory / "api-key.pem"),
                        "httpPort": 5002,
                        "tlsPort": 5001,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                        **({"certificateValidityPeriod": validity} if validity else {}),
                    }
                }
            )
        )
        log = (directory / "pebble.log").open("wb")
        pebble.process = subprocess.Popen(
            [binary, "-config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PEBBLE_VA_ALWAYS_VALID": "1",
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
            },
        )
        log.close()
        try:
            pebble._wait()
            yield pebble
        finally:
            pebble.process.terminate()
            pebble.process.wait(10)

    def _make_certificates(self) -> None:
        d = self.directory
        run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(d / "api-root-key.pem"), "-out", str(self.api_root),
            "-subj", "/CN=pebble test api root", "-days", "2")  # fmt: skip
        (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / "api-key.pem"), "-out", str(d / "api.csr"), "-subj", "/CN=localhost")  # fmt: skip
        run("openssl", "x509", "-req", "-in", str(d / "api.csr"), "-CA", str(self.api_root),
            "-CAkey", str(d / "api-root-key.pem"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / "san.cnf"), "-out", str(d / "api-cert.pem"))  # fmt: skip

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.api_root))

    def _wait(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.directory_url, context=self._context(), timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"pebble did not start:\n{(self.directory / 'pebble.log').read_text()}")

    def issuing_root(self) -> Path:
        """The root of issued certificates (regenerated at each Pebble start)."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=self._context(), timeout=5) as response:
            path = self.directory / "issuing-root.pem"
            path.write_bytes(response.read())
        return path


def served_certificate(port: int, name: str, cafile: Path) -> bytes:
    """The DER certificate served for `name` on 127.0.0.1:`port`, verified against `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
