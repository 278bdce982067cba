"""Access keys for the S3 API: created once, stored encrypted, scoped to buckets.

The secret of a key is shown when it is created and never again: the
database holds it encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a
key file in the data directory (mode 0600, created on first use), because
SigV4 verification needs the secret itself, not a hash of it. Copy that file
to every node of a scale-out deployment (or point `storage.secret_key_file`
at a shared one). Neither secrets nor the key file ever reach a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

from shoestring.db.migrations import Migration
from shoestring.secrets import write_private
from shoestring.storage.errors import StorageError

if TYPE_CHECKING:
    from shoestring.db import DatabaseService

MIGRATIONS = [
    Migration(
        "storage_keys",
        1,
        [
            """CREATE TABLE shoestring_storage_keys (
                access_key_id TEXT PRIMARY KEY,
                secret TEXT NOT NULL,
                buckets TEXT NOT NULL,
                can_read INTEGER NOT NULL,
                can_write INTEGER NOT NULL,
                created REAL NOT NULL
            )"""
        ],
    )
]

# The key the server signs its own presigned URLs with. Its secret is derived
# from the encryption key, so every node sharing that file agrees on it.
PRESIGN_KEY_ID = "SSPRESIGNSHOESTRING0"
# How long a looked-up key is trusted before it is read again: revocation
# reaches every process within this many seconds.
CACHE_SECONDS = 5.0
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class AccessKey:
    """Who may do what: read and/or write, on the named buckets (`*`: all)."""

    access_key_id: str
    buckets: tuple[str, ...]
    read: bool
    write: bool
    created: float = 0.0

    def allows(self, bucket: str | None, *, write: bool) -> bool:
        if bucket is not None and "*" not in self.buckets and bucket not in self.buckets:
            return False
        return self.write if write else self.read


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the only time its secret is available."""

    key: AccessKey
    secret_access_key: str


class UnknownAccessKey(StorageError):
    code = "InvalidAccessKeyId"


def load_or_create_fernet_key(path: Path) -> bytes:
    """The encryption key in `path`, created (mode 0600) if the file does not exist.

    Nodes starting at once with a shared key file all end up with the one
    key written first.
    """
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, Fernet.generate_key(), replace=False)
    return path.read_bytes().strip()


class KeyStore:
    """Access keys in the app's database, secrets encrypted."""

    def __init__(self, db: DatabaseService, key_file: Path) -> None:
        self._db = db
        self._key_file = key_file
        self._fernet_key: bytes | None = None
        self._cache: dict[str, tuple[float, AccessKey, str] | None] = {}

    @property
    def _fernet(self) -> Fernet:
        if self._fernet_key is None:
            self._fernet_key = load_or_create_fernet_key(self._key_file)
        return Fernet(self._fernet_key)

    def presign_secret(self) -> str:
        self._fernet  # noqa: B018 - loads or creates the key file
        assert self._fernet_key is not None
        return hmac.new(self._fernet_key, b"shoestring presign key", hashlib.sha256).hexdigest()

    async def create(self, buckets: tuple[str, ...], *, read: bool, write: bool) -> NewKey:
        if not (read or write):
            raise ValueError("a key must allow reading, writing or both")
        access_key_id = "SS" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))
        secret = base64.b64encode(secrets.token_bytes(30)).decode("ascii")
        sealed = self._fernet.encrypt(secret.encode("ascii")).decode("ascii")
        now = time.time()
        await self._db.database.write(
            "INSERT INTO shoestring_storage_keys "
            "(access_key_id, secret, buckets, can_read, can_write, created) VALUES (?, ?, ?, ?, ?, ?)",
            (access_key_id, sealed, json.dumps(list(buckets)), int(read), int(write), now),
        )
        return NewKey(AccessKey(access_key_id, buckets, read, write, now), secret)

    async def list(self) -> list[AccessKey]:
        rows = await self._db.fetchall(
            "SELECT access_key_id, buckets, can_read, can_write, created "
            "FROM shoestring_storage_keys ORDER BY created"
        )
        return [
            AccessKey(r[0], tuple(json.loads(r[1])), bool(r[2]), bool(r[3]), r[4]) for r in rows
        ]

    async def delete(self, access_key_id: str) -> bool:
        changed = await self._db.database.write(
            "DELETE FROM shoestring_storage_keys WHERE access_key_id = ?", (access_key_id,)
        )
        self._cache.pop(access_key_id, None)
        return changed > 0

    async def lookup(self, access_key_id: str) -> tuple[AccessKey, str]:
        """The key and its secret; UnknownAccessKey if there is no such key."""
        if access_key_id == PRESIGN_KEY_ID:
            return AccessKey(PRESIGN_KEY_ID, ("*",), True, True), self.presign_secret()
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        row = await self._db.fetchone(
            "SELECT access_key_id, secret, buckets, can_read, can_write, created "
            "FROM shoestring_storage_keys WHERE access_key_id = ?",
            (access_key_id,),
        )
        if row is None:
            raise UnknownAccessKey("the access key id you provided does not exist in our records")
        try:
            secret = self._fernet.decrypt(row[1].encode("ascii")).decode("ascii")
        except InvalidToken:
            raise StorageError(
                f"the secret of access key {access_key_id} cannot be decrypted with {self._key_file}: "
                "restore the key file it was created with"
            ) from None
        key = AccessKey(row[0], tuple(json.loads(row[2])), bool(row[3]), bool(row[4]), row[5])
        self._cache[access_key_id] = (now, key, secret)
        return key, secret
