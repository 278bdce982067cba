"""Checking DKIM signatures the way a receiving server does (dkimpy), with the key we published."""

from __future__ import annotations

from pathlib import Path

import dkim as dkimpy

from shoestring.mail import dkim as our_dkim


def dkim_verifies(raw: bytes, key: Path, domain: str, selector: str = "mail") -> bool:
    """True if `raw` carries a valid signature of `domain` made with `key`."""
    record = our_dkim.public_key_record(key).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{selector}._domainkey.{domain}.".encode()
        return record

    return bool(dkimpy.verify(raw, dnsfunc=dns))
