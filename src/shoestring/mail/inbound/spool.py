"""The inbound spool: received messages in the app's database until every handler ran.

A message is stored, with the job that processes it, in one transaction that
commits (fsync) before the SMTP server answers 250; a crash after the 250
therefore loses nothing, and the job processes it after the restart. The
body and addresses are deleted once the message is finished: every recipient's
handler succeeded, or the ones left failed on their last attempt.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass

from shoestring.db.database import Database, Transaction
from shoestring.db.migrations import Migration

MIGRATIONS = [
    Migration(
        "mail_inbound",
        1,
        by_dialect={
            "sqlite": [
                "CREATE TABLE shoestring_inbound (id TEXT PRIMARY KEY, dedupe TEXT UNIQUE NOT NULL,"
                " mail_from TEXT NOT NULL, recipients TEXT NOT NULL, done TEXT NOT NULL DEFAULT '[]',"
                " raw BLOB, auth TEXT NOT NULL, received_at REAL NOT NULL, state TEXT NOT NULL)"
            ],
            "postgresql": [
                "CREATE TABLE shoestring_inbound (id TEXT PRIMARY KEY, dedupe TEXT UNIQUE NOT NULL,"
                " mail_from TEXT NOT NULL, recipients TEXT NOT NULL, done TEXT NOT NULL DEFAULT '[]',"
                " raw BYTEA, auth TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,"
                " state TEXT NOT NULL)"
            ],
        },
    ),
    # Processed messages past the dedupe window are deleted by their age.
    Migration(
        "mail_inbound",
        2,
        ["CREATE INDEX shoestring_inbound_age ON shoestring_inbound (state, received_at)"],
    ),
    # A message whose handler kept failing ends 'failed', with why (an exception's type).
    Migration("mail_inbound", 3, ["ALTER TABLE shoestring_inbound ADD COLUMN last_error TEXT"]),
]


@dataclass(frozen=True, slots=True)
class Spooled:
    id: str
    mail_from: str
    recipients: list[str]
    done: list[str]
    raw: bytes
    auth: dict[str, str]
    received_at: float


# How long a finished message's key is kept to recognise it sent again: a
# client that never saw our 250 retries for up to 5 days (RFC 5321 §4.5.4.1).
DEDUPE_SECONDS = 5 * 86400
# A message still 'received' this long after it came had its job end without
# finishing it (the worker died on the last attempt): deleted, never kept forever.
# Far beyond any retry schedule (mail.retries ≤ 50, an hour apart at most).
STALE_SECONDS = 30 * 86400


def dedupe_key(mail_from: str, recipients: list[str], raw: bytes) -> str:
    """The same message from the same sender to the same recipients, sent twice (a client
    retrying after a lost 250).

    `raw` is the whole message as the client sent it, header and body, before we
    add our trace: a retransmission is byte for byte the same, while two messages
    that differ only in a header (a Subject, with no Message-ID to tell them apart)
    are two messages.
    """
    parts = [mail_from, *sorted(recipients), hashlib.sha256(raw).hexdigest()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


async def store(
    tx: Transaction,
    *,
    mail_from: str,
    recipients: list[str],
    raw: bytes,
    auth: dict[str, str],
    dedupe: str,
) -> str | None:
    """Spool a message; None if this very message is already spooled."""
    spool_id = uuid.uuid4().hex
    changed = await tx.execute(
        "INSERT INTO shoestring_inbound (id, dedupe, mail_from, recipients, raw, auth,"
        " received_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'received')"
        " ON CONFLICT (dedupe) DO NOTHING",
        [spool_id, dedupe, mail_from, json.dumps(recipients), raw, json.dumps(auth), time.time()],
    )
    return spool_id if changed == 1 else None


async def load(database: Database, spool_id: str) -> Spooled | None:
    row = await database.fetchone(
        "SELECT id, mail_from, recipients, done, raw, auth, received_at FROM shoestring_inbound"
        " WHERE id = ? AND state = 'received'",
        [spool_id],
    )
    if row is None:
        return None
    return Spooled(
        row[0], row[1], json.loads(row[2]), json.loads(row[3]), bytes(row[4]),
        json.loads(row[5]), row[6],
    )  # fmt: skip


async def mark_done(
    database: Database, spool_id: str, done: list[str], finished: bool, error: str | None = None
) -> None:
    """Record which recipients are handled; once the message is finished, forget the body.

    A message is finished when every recipient's handler succeeded (processed),
    or when the ones left failed on their last attempt (`error` says why: failed).
    """
    if not finished:
        await database.write(
            "UPDATE shoestring_inbound SET done = ? WHERE id = ?", [json.dumps(done), spool_id]
        )
        return
    now = time.time()
    await database.write_batch(
        [
            # Keep only what deduplicates resends (a hash) and what the queue needs.
            (
                "UPDATE shoestring_inbound SET done = ?, state = ?, last_error = ?, raw = NULL,"
                " mail_from = '', recipients = '[]', auth = '{}' WHERE id = ?",
                [json.dumps(done), "failed" if error else "processed", error, spool_id],
            ),
            # Past the retry window, a finished message's hash is no use: forgotten,
            # in the same commit.
            (
                "DELETE FROM shoestring_inbound WHERE (state IN ('processed', 'failed')"
                " AND received_at < ?) OR (state = 'received' AND received_at < ?)",
                [now - DEDUPE_SECONDS, now - STALE_SECONDS],
            ),
        ]
    )
