"""Outbound mail: accepted into the outbox per second, and delivered per second
to a local SMTP sink (aiosmtpd on loopback), vs. plain smtplib sending the same
messages to the same sink, in one run.

    python bench/mail_out.py [--messages 500]

Delivery runs as it does in production: jobs claimed by the worker, one SMTP
session per message, the outbox updated after each. The baseline opens one
smtplib session per message too.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Counter, free_port
from aiosmtpd.controller import Controller

from shoestring import App, Settings
from shoestring.config import DatabaseSettings, JobsSettings, MailSettings


def baseline(port: int, messages: int) -> float:
    started = time.perf_counter()
    for n in range(messages):
        message = EmailMessage()
        message["From"] = "noreply@example.com"
        message["To"] = f"user{n}@example.net"
        message["Subject"] = "bench"
        message.set_content("hello " * 50)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(message)
    return messages / (time.perf_counter() - started)


def make_app(port: int, directory: Path, *, worker: bool) -> App:
    settings = Settings(
        data_dir=directory,
        database=DatabaseSettings(url=f"sqlite:///{directory / 'mail.db'}"),
        jobs=JobsSettings(worker=worker, concurrency=8, poll_interval=0.05),
        mail=MailSettings(
            transport=f"smtp://127.0.0.1:{port}",
            rate_per_minute=1_000_000,
            rate_per_recipient_per_hour=1_000_000,
        ),
    )
    app = App("benchmail", settings=settings)
    app.mail  # noqa: B018 - as the runtime does before starting services
    return app


async def ours(port: int, messages: int, directory: Path, counter: Counter) -> tuple[float, float]:
    """Acceptance alone (no worker), then delivery of the queued messages alone."""
    producer = make_app(port, directory, worker=False)
    await producer.services.start_all()
    started = time.perf_counter()
    for n in range(messages):
        await producer.mail.send(to=f"user{n}@example.net", subject="bench", text="hello " * 50)
    accepted = messages / (time.perf_counter() - started)
    await producer.services.stop_all()
    courier = make_app(port, directory, worker=True)
    started = time.perf_counter()
    await courier.services.start_all()
    try:
        while counter.count < messages:
            await asyncio.sleep(0.01)
        delivered = messages / (time.perf_counter() - started)
    finally:
        await courier.services.stop_all()
    return accepted, delivered


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    counter = Counter()
    port = free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        raw = baseline(port, args.messages)
        counter.count = 0
        with tempfile.TemporaryDirectory() as tmp:
            import uvloop

            accepted, delivered = uvloop.run(ours(port, args.messages, Path(tmp), counter))
    finally:
        controller.stop()
    print(f"{args.messages} messages to an aiosmtpd sink on loopback")
    print(f"  accepted into the outbox (committed, fsync'd): {accepted:,.0f}/s")
    print(f"  delivered through the outbox:                  {delivered:,.0f}/s")
    print(f"  plain smtplib, one session per message:        {raw:,.0f}/s")
    print(f"  ratio delivered / smtplib: {delivered / raw:.2f}")


if __name__ == "__main__":
    main()
