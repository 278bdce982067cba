"""Inbound mail: messages accepted per second (10 KiB each, 20 concurrent SMTP
clients) and forwarded end to end per second to a local SMTP sink, vs. Debian's
postfix accepting the same stream on loopback into a local maildir, in one run.

    python bench/mail_in.py [--messages 2000]

Ours: `shoestring run` with [mail.inbound] and a handler that forwards each
message with shoestring's Forwarder, as othermail does (From rewritten to a
reverse alias, a VERP envelope sender, DKIM-signed for our domain), through
the outbox (the smtp transport) to an aiosmtpd sink in this process. Every 250 means the message passed SPF, DKIM and DMARC checks and is
committed (fsync'd) to the spool. The checks ask a DNS server in this process
(as a production box would ask its local caching resolver): the sandbox's own
resolver drops queries when 20 arrive at once. Postfix does no such checks
in its default configuration.
Postfix: `apt-get install postfix`; this script reconfigures the machine's
postfix (loopback only, port 2526, virtual maildir under /var/tmp) and starts
and stops it: run it on a bench machine, not on a mail server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import VENV_BIN, Counter, free_port, wait_for
from aiosmtpd.controller import Controller

from tests.mail.dns import LoopbackDNS

CLIENTS = 20
BODY = ("x" * 76 + "\r\n") * (10 * 1024 // 78)  # about 10 KiB
POSTFIX_PORT = 2526
MAILDIR = Path("/var/tmp/postfix-bench")  # noqa: S108 - postfix's own maildir, owned by nobody

APP = """
from shoestring import App
from shoestring.mail.inbound import Forwarder

app = App("mailin")
forwarder = Forwarder(app, domain="bench.example")


@app.on_mail("*@bench.example")
async def forward(message) -> None:
    await forwarder.forward(message, to="owner@sink.example")
"""


def blast(port: int, messages: int) -> float:
    """Seconds for CLIENTS connections to have `messages` accepted between them."""
    per_client = messages // CLIENTS
    errors: list[str] = []

    def client(index: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for n in range(per_client):
                raw = (
                    f"From: sender{index}@elsewhere.example\r\nTo: box@bench.example\r\n"
                    f"Subject: bench {index}-{n}\r\nMessage-ID: <{index}.{n}.{time.time_ns()}@bench>\r\n"
                    f"\r\n{BODY}"
                )
                try:
                    smtp.sendmail(f"sender{index}@elsewhere.example", ["box@bench.example"], raw)
                except smtplib.SMTPException as exc:
                    errors.append(str(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} messages refused, e.g. {errors[0]}")
    return elapsed


def until(count: Any, target: int, started: float, timeout: float = 300) -> float:
    while count() < target:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"only {count()} of {target} arrived")
        time.sleep(0.01)
    return time.perf_counter() - started


def ours(messages: int) -> tuple[float, float]:
    sink = Counter()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    zone = LoopbackDNS()
    zone.records = {
        ("elsewhere.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
        ("_dmarc.elsewhere.example", "TXT"): ['"v=DMARC1; p=none"'],
    }
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "mailin"
        project.mkdir()
        (project / "app.py").write_text(APP)
        dkim = [VENV_BIN / "shoestring", "mail", "dkim", "init", "--domain", "bench.example"]
        subprocess.run(
            [*map(str, dkim), "--project", str(project)], check=True, capture_output=True
        )
        smtp_port, http_port = free_port(), free_port()
        env = {
            **os.environ,
            "SHOESTRING_LOG__LEVEL": "warning",
            "SHOESTRING_MAIL__INBOUND__ENABLED": "true",
            "SHOESTRING_MAIL__INBOUND__PORT": str(smtp_port),
            "SHOESTRING_MAIL__INBOUND__DOMAINS": '["bench.example"]',
            "SHOESTRING_MAIL__INBOUND__MAX_CONNECTIONS_PER_IP": "100",
            "SHOESTRING_MAIL__TRANSPORT": f"smtp://127.0.0.1:{sink_port}",
            "SHOESTRING_MAIL__DKIM_DOMAIN": "bench.example",
            "SHOESTRING_MAIL__RATE_PER_MINUTE": "1000000",
            "SHOESTRING_MAIL__RATE_PER_RECIPIENT_PER_HOUR": "1000000",
            "SHOESTRING_MAIL__INBOUND__NAMESERVERS": f'["127.0.0.1:{zone.port}"]',
            "SHOESTRING_JOBS__CONCURRENCY": "16",
        }
        command = [str(VENV_BIN / "shoestring"), "run", str(project), "--port", str(http_port)]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(f"http://127.0.0.1:{http_port}/_ready")
            started = time.perf_counter()
            accepted = blast(smtp_port, messages)
            forwarded = until(lambda: sink.count, messages // CLIENTS * CLIENTS, started)
        finally:
            process.terminate()
            process.wait(30)
            controller.stop()
            zone.close()
    return accepted, forwarded


def postfix(messages: int) -> tuple[float, float] | None:
    if shutil.which("postfix") is None:
        print("postfix is not installed (apt-get install postfix): no baseline")
        return None
    settings = [
        "inet_interfaces = loopback-only", "mydestination =",
        "virtual_mailbox_domains = bench.example", f"virtual_mailbox_base = {MAILDIR}",
        "virtual_mailbox_maps = static:inbox/", "virtual_uid_maps = static:65534",
        "virtual_gid_maps = static:65534", "maillog_file = /var/log/postfix-bench.log",
        "smtpd_client_connection_count_limit = 0", "smtpd_client_message_rate_limit = 0",
        "message_size_limit = 26214400", "default_process_limit = 100",
    ]  # fmt: skip
    subprocess.run(["postconf", "-e", *settings], check=True)
    subprocess.run(["postconf", "-MX", "smtp/inet"], check=True)
    listener = f"127.0.0.1:{POSTFIX_PORT}/inet=127.0.0.1:{POSTFIX_PORT} inet n - n - - smtpd"
    subprocess.run(["postconf", "-M", listener], check=True)
    shutil.rmtree(MAILDIR, ignore_errors=True)
    (MAILDIR / "inbox" / "new").mkdir(parents=True)
    for path in (MAILDIR, MAILDIR / "inbox", MAILDIR / "inbox" / "new"):
        os.chown(path, 65534, 65534)
    subprocess.run(["postfix", "stop"], capture_output=True)
    subprocess.run(["postfix", "start"], check=True, capture_output=True)
    try:
        time.sleep(1)
        started = time.perf_counter()
        accepted = blast(POSTFIX_PORT, messages)
        inbox = MAILDIR / "inbox" / "new"
        delivered = until(lambda: len(os.listdir(inbox)), messages // CLIENTS * CLIENTS, started)
    finally:
        subprocess.run(["postfix", "stop"], capture_output=True)
    return accepted, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    n = args.messages // CLIENTS * CLIENTS
    ours_accepted, ours_forwarded = ours(n)
    print(
        f"shoestring  accepted {n / ours_accepted:7.0f} msg/s   forwarded end to end {n / ours_forwarded:7.0f} msg/s"
    )
    baseline = postfix(n)
    if baseline is not None:
        accepted, delivered = baseline
        print(
            f"postfix     accepted {n / accepted:7.0f} msg/s   delivered to maildir {n / delivered:7.0f} msg/s"
        )
        print(
            f"ratio (ours / postfix): accepted {accepted / ours_accepted:.2f}x, end to end {delivered / ours_forwarded:.2f}x"
        )


if __name__ == "__main__":
    main()
