"""postmaster@ each of our domains, which RFC 5321 §4.5.1 requires a mail domain to accept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoestring.errors import ConfigError
from tests.mail.dns import LoopbackDNS
from tests.mail.mailroom import DOMAIN, converse, note, open_mailroom

pytestmark = pytest.mark.anyio


async def test_postmaster_mail_is_passed_on_whole_before_any_handler(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    # `*@DOMAIN` would take postmaster@ too: the postmaster address comes first.
    async with open_mailroom(database_url, tmp_path, postmaster="ops@elsewhere.example") as room:
        message = note("your server bounces")
        assert await room.send(f"PostMaster@{DOMAIN}", message=message) == {}
        for _ in range(100):
            entries = await room.app.mail.entries(5)
            if entries:
                break
            await asyncio.sleep(0.05)
        (entry,) = entries
        assert entry.recipients == ["ops@elsewhere.example"]
        assert entry.subject == f"To PostMaster@{DOMAIN}: your server bounces"
        assert entry.message is not None
        assert f"From: postmaster@{DOMAIN}" in entry.message
        assert "Content-Type: message/rfc822" in entry.message
        assert "Subject: your server bounces" in entry.message  # the original, attached
        assert room.received == []  # the app's own handler was not asked


async def test_without_a_postmaster_address_it_is_refused_and_cannot_loop(
    database_url: str, tmp_path: Path, default_dns: LoopbackDNS
) -> None:
    async with open_mailroom(database_url, tmp_path, pattern=f"notes@{DOMAIN}") as room:
        replies = await asyncio.to_thread(converse, room.port, [f"RCPT TO:<postmaster@{DOMAIN}>"])
        assert replies[-1].startswith("550 5.1.1")
    with pytest.raises(ConfigError, match="another domain"):
        async with open_mailroom(database_url, tmp_path / "loop", postmaster=f"admin@{DOMAIN}"):
            pass
