"""The fs backend's index: checksums in their column, and an index from before them upgraded."""

# ruff: noqa: S324 - ETags are MD5s

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shoestring.storage.digests import CHECKSUMS, to_base64
from shoestring.storage.fs_index import (
    MIGRATIONS,
    SCHEMA,
    checksum_from_text,
    checksum_to_text,
)
from shoestring.storage.objects import Checksum, ObjectMeta
from tests.storage.conftest import serve

META = json.dumps(ObjectMeta().to_json())


def _old_index(root: Path) -> None:
    """An index as the first release wrote it: an object, and an upload with one part."""
    (root / "data" / "ab").mkdir(parents=True)
    (root / "data" / "ab" / "ab-object").write_bytes(b"old bytes")
    (root / "data" / "ab" / "ab-part").write_bytes(b"old part")
    etag = f'"{hashlib.md5(b"old bytes").hexdigest()}"'
    part_etag = f'"{hashlib.md5(b"old part").hexdigest()}"'
    now = time.time()
    with contextlib.closing(sqlite3.connect(root / "index.sqlite")) as db, db:
        for statement in SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO buckets VALUES ('old', ?, '{\"access\": \"private\"}')", (now,))
        db.execute(
            "INSERT INTO objects VALUES ('old', ?, 'ab-object', 9, ?, ?, ?)",
            (b"k", etag, now, META),
        )
        db.execute("INSERT INTO uploads VALUES ('u1', 'old', ?, ?, ?)", (b"up", META, now))
        db.execute("INSERT INTO parts VALUES ('u1', 1, 'ab-part', 8, ?, ?)", (part_etag, now))


def _version(root: Path) -> int:
    with contextlib.closing(sqlite3.connect(root / "index.sqlite")) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        return version


def test_an_index_from_before_checksums_is_upgraded_in_place(tmp_path: Path) -> None:
    root = tmp_path / "data" / "storage"
    _old_index(root)
    assert _version(root) == 0
    server = serve(tmp_path)
    try:
        s3 = server.client()
        old = s3.get_object(Bucket="old", Key="k")
        assert old["Body"].read() == b"old bytes" and "ChecksumCRC32" not in old
        part = s3.list_parts(Bucket="old", Key="up", UploadId="u1")["Parts"][0]
        s3.complete_multipart_upload(
            Bucket="old", Key="up", UploadId="u1",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )  # fmt: skip
        assert s3.get_object(Bucket="old", Key="up")["Body"].read() == b"old part"
        s3.put_object(Bucket="old", Key="new", Body=b"new", ChecksumAlgorithm="SHA256")
    finally:
        server.stop()
    assert _version(root) == len(MIGRATIONS)

    again = serve(tmp_path)  # an index already upgraded opens as it is
    try:
        got = again.client().get_object(Bucket="old", Key="new")
        assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"new").digest()).decode()
        assert got["Body"].read() == b"new"
    finally:
        again.stop()


@given(
    algorithm=st.sampled_from(sorted(CHECKSUMS)),
    digest=st.binary(min_size=1, max_size=64),
    parts=st.one_of(st.none(), st.integers(1, 10_000)),
)
def test_a_checksum_reads_back_from_its_column(
    algorithm: str, digest: bytes, parts: int | None
) -> None:
    value = to_base64(digest) + (f"-{parts}" if parts else "")
    checksum = Checksum(algorithm, value, "COMPOSITE" if parts else "FULL_OBJECT")
    assert checksum_from_text(checksum_to_text(checksum)) == checksum
    assert checksum_from_text(checksum_to_text(None)) is None
