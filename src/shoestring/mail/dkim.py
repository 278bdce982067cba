"""DKIM keys, signatures, and the DNS records a domain should publish."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shoestring.mail.errors import MailError

# What the signature covers: the headers a forger would change.
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to",
                  b"mime-version", b"content-type"]  # fmt: skip


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    """Where the key of `domain` lives; DNS names ignore case, and so does this."""
    domain = domain.strip().rstrip(".").lower()
    return data_dir / "mail" / "dkim" / f"{selector}._domainkey.{domain}.pem"


def generate_key(path: Path) -> None:
    """A 2048-bit RSA key (the size every receiver accepts), readable only by its owner."""
    if path.exists():
        raise MailError(f"{path} exists already; remove it first to replace the key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def public_key_record(path: Path) -> str:
    """The TXT value of `<selector>._domainkey.<domain>`."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def sign(raw: bytes, *, domain: str, selector: str, key: bytes) -> bytes:
    """`raw` with a DKIM-Signature header prepended."""
    import dkim  # dkimpy brings dnspython: ~100 ms of startup, paid only by apps that sign

    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), key, include_headers=SIGNED_HEADERS
    )
    return bytes(signature) + raw


def dns_records(
    domain: str, selector: str, path: Path | None, *, inbound_host: str | None
) -> list[tuple[str, str, str]]:
    """(name, type, value) of SPF, DKIM, DMARC and, for inbound mail, MX."""
    records = [
        (domain, "TXT", "v=spf1 a mx ~all"),
        (
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}; adkim=s; aspf=s",
        ),
    ]
    if path is not None and path.exists():
        records.insert(1, (f"{selector}._domainkey.{domain}", "TXT", public_key_record(path)))
    if inbound_host:
        records.append((domain, "MX", f"10 {inbound_host}."))
    return records
