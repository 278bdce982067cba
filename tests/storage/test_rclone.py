"""Debian's rclone against the S3 API, configured as a user would without a config file.

rclone is required under CI (`CI=true`, see .ci/run); elsewhere the test is
skipped when it is not installed.
"""

# ruff: noqa: S324 - rclone compares MD5s: the test computes them to compare

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.test_render import need
from tests.storage.conftest import ServerThread
from tests.storage.s3api.test_auth import code_of

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
Rclone = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def rclone(server: ServerThread, tmp_path: Path) -> Rclone:
    """`rclone ARGS` with the remote `ss:` set to `server` by environment variables."""
    binary = need("rclone", "rclone")
    key = server.new_key()
    # Nothing of this machine's own AWS or rclone setup (a CA bundle, a profile) may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        RCLONE_CONFIG=str(tmp_path / "rclone.conf"),  # never written: no such file is needed
        RCLONE_CONFIG_SS_TYPE="s3",
        RCLONE_CONFIG_SS_PROVIDER="Other",
        RCLONE_CONFIG_SS_ENDPOINT=server.url + "/_s3",
        RCLONE_CONFIG_SS_ACCESS_KEY_ID=key.key.access_key_id,
        RCLONE_CONFIG_SS_SECRET_ACCESS_KEY=key.secret_access_key,
        RCLONE_CONFIG_SS_FORCE_PATH_STYLE="true",
    )

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, "--retries", "1", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert (result.returncode == 0) is ok, result.stderr
        return result

    return run


def md5s(tree: Path) -> dict[str, str]:
    return {
        path.relative_to(tree).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in tree.rglob("*")
        if path.is_file()
    }


def test_rclone_copy_check_sync_delete_purge(
    server: ServerThread, rclone: Rclone, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "ünï cødé").mkdir()
    (tree / "index.html").write_text("<h1>hi</h1>")
    (tree / "ünï cødé" / "файл ✓ a+b&c.txt").write_text("unicode")
    (tree / "sub" / "deeper" / "d.txt").write_text("deep")
    (tree / "sub" / "big.bin").write_bytes(os.urandom(6 * MIB))  # over the 5 MiB cutoff
    big = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")

    rclone("mkdir", "ss:rclone-bucket")
    rclone("copy", str(tree), "ss:rclone-bucket/tree", *big)
    s3 = server.client()
    head = s3.head_object(Bucket="rclone-bucket", Key="tree/sub/big.bin")
    assert head["ETag"].endswith('-2"')  # it went up as a multipart upload
    listed = rclone("ls", "ss:rclone-bucket").stdout
    assert "tree/ünï cødé/файл ✓ a+b&c.txt" in listed and "tree/sub/big.bin" in listed
    entries = json.loads(rclone("lsjson", "--recursive", "--hash", "ss:rclone-bucket/tree").stdout)
    hashes = {e["Path"]: e["Hashes"]["md5"] for e in entries if not e["IsDir"]}
    assert hashes == md5s(tree)
    rclone("check", str(tree), "ss:rclone-bucket/tree")
    rclone("check", "--download", str(tree), "ss:rclone-bucket/tree")

    (tree / "index.html").unlink()
    (tree / "sub" / "deeper" / "d.txt").write_text("changed")
    (tree / "new.txt").write_text("new")
    rclone("sync", str(tree), "ss:rclone-bucket/tree", *big)
    entries = json.loads(rclone("lsjson", "--recursive", "--hash", "ss:rclone-bucket/tree").stdout)
    assert {e["Path"]: e["Hashes"]["md5"] for e in entries if not e["IsDir"]} == md5s(tree)
    rclone("check", str(tree), "ss:rclone-bucket/tree")

    rclone("delete", "ss:rclone-bucket/tree/sub")
    assert sorted(rclone("lsf", "--recursive", "--files-only", "ss:rclone-bucket").stdout.split("\n")) == [
        "", "tree/new.txt", "tree/ünï cødé/файл ✓ a+b&c.txt",
    ]  # fmt: skip
    rclone("purge", "ss:rclone-bucket")
    assert rclone("lsd", "ss:").stdout == ""
    assert code_of(lambda: s3.head_bucket(Bucket="rclone-bucket")) == "404"


def test_rclone_versioning_and_multipart_cleanup(server: ServerThread, rclone: Rclone) -> None:
    rclone("mkdir", "ss:rclone-pending")
    assert rclone("backend", "versioning", "ss:rclone-pending").stdout.strip() == "Unversioned"
    refused = rclone("backend", "versioning", "ss:rclone-pending", "Enabled", ok=False)
    assert "NotImplemented" in refused.stderr and "unversioned" in refused.stderr
    suspended = rclone("backend", "versioning", "ss:rclone-pending", "Suspended")
    assert suspended.stdout.strip() == "Suspended"

    s3 = server.client()
    for key in ("a/1", "a/2", "ü"):
        s3.create_multipart_upload(Bucket="rclone-pending", Key=key)
    pending = json.loads(rclone("backend", "list-multipart-uploads", "ss:rclone-pending").stdout)
    assert [u["Key"] for u in pending["rclone-pending"]] == ["a/1", "a/2", "ü"]
    rclone("backend", "cleanup", "ss:rclone-pending", "-o", "max-age=0")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="rclone-pending")
