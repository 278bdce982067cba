"""`shoestring run` as deployed, driven by the aws cli, boto3 and `shoestring keys/storage`."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from shoestring.cli.project import create_project
from tests.e2e.conftest import Server, run_cli
from tests.storage.conftest import s3_client

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "demo"
    create_project(directory)
    return directory


def new_key(project: Path) -> dict[str, str]:
    created = run_cli(project, "keys", "create", "--json")
    assert created.returncode == 0, created.stderr
    key: dict[str, str] = json.loads(created.stdout)
    return key


def client(server: Server, key: dict[str, str]) -> Any:
    return s3_client(server.base_url + "/_s3", key["access_key_id"], key["secret_access_key"])


def body_for(index: int) -> bytes:
    return hashlib.sha256(str(index).encode()).digest() * (1024 + index % 7 * 512)


def test_kill_9_during_puts_loses_no_acknowledged_object(project: Path) -> None:
    key = new_key(project)
    server = Server(project)
    try:
        server.wait_ready()
        s3 = client(server, key)
        s3.create_bucket(Bucket="crash")
        acknowledged: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(offset: int) -> None:
            own = client(server, key)
            index = offset
            while not stop.is_set():
                try:
                    own.put_object(Bucket="crash", Key=f"obj/{index}", Body=body_for(index))
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    return  # the server died mid-request: this one was never acknowledged
                with lock:
                    acknowledged.append(index)
                index += 4

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        server.process.kill()  # SIGKILL: no shutdown, no flush
        server.process.wait()
        stop.set()
        for thread in threads:
            thread.join(10)
    finally:
        server.kill()
    assert len(acknowledged) > 20, (
        "too few PUTs were acknowledged before the kill to prove anything"
    )

    restarted = Server(project)
    try:
        restarted.wait_ready()
        s3 = client(restarted, key)
        listed = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crash")
            for o in page.get("Contents", [])
        ]
        for index in acknowledged:
            assert f"obj/{index}" in listed
        for name in listed:  # every visible object is whole, acknowledged or not
            index = int(name.split("/")[1])
            assert s3.get_object(Bucket="crash", Key=name)["Body"].read() == body_for(index)
    finally:
        restarted.terminate()


def test_aws_cli_and_storage_cli(project: Path, tmp_path: Path) -> None:
    key = new_key(project)
    server = Server(project)
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["aws", "--endpoint-url", server.base_url + "/_s3", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result

    try:
        server.wait_ready()
        aws("s3", "mb", "s3://cli-bucket")
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(MIB) * 50)  # 50 MiB: the aws cli uploads it in 8 MiB parts
        aws("s3", "cp", str(big), "s3://cli-bucket/big.bin")
        head = json.loads(
            aws(
                "s3api", "head-object", "--bucket", "cli-bucket", "--key", "big.bin",
                "--checksum-mode", "ENABLED",
            ).stdout
        )  # fmt: skip
        assert head["ContentLength"] == 50 * MIB and head["ETag"].endswith('-7"')
        # The aws cli checksums each part with CRC32: the object's is their COMPOSITE.
        assert head["ChecksumCRC32"].endswith("-7") and head["ChecksumType"] == "COMPOSITE"
        back = tmp_path / "back.bin"
        aws("s3", "cp", "s3://cli-bucket/big.bin", str(back))
        assert hashlib.md5(back.read_bytes()).digest() == hashlib.md5(big.read_bytes()).digest()

        small = tmp_path / "small.txt"
        small.write_bytes(b"checksummed by the aws cli")
        aws("s3", "cp", str(small), "s3://cli-bucket/small.txt")
        crc32 = base64.b64encode(zlib.crc32(small.read_bytes()).to_bytes(4, "big")).decode()
        got = json.loads(
            aws(
                "s3api", "get-object", "--bucket", "cli-bucket", "--key", "small.txt",
                "--checksum-mode", "ENABLED", str(tmp_path / "small.back"),
            ).stdout
        )  # fmt: skip
        assert (got["ChecksumCRC32"], got["ChecksumType"]) == (crc32, "FULL_OBJECT")
        assert (tmp_path / "small.back").read_bytes() == small.read_bytes()
        aws("s3", "cp", "s3://cli-bucket/small.txt", str(tmp_path / "small.cp"))  # validated
        assert (tmp_path / "small.cp").read_bytes() == small.read_bytes()
        aws("s3", "rm", "s3://cli-bucket/small.txt")

        tree = tmp_path / "site"
        (tree / "css").mkdir(parents=True)
        (tree / "index.html").write_text("<h1>hi</h1>")
        (tree / "css" / "a.css").write_text("body{}")
        aws("s3", "sync", str(tree), "s3://cli-bucket/site")
        listing = aws("s3", "ls", "--recursive", "s3://cli-bucket/site/").stdout
        assert "site/index.html" in listing and "site/css/a.css" in listing
        aws("s3", "rm", "--recursive", "s3://cli-bucket/site")
        assert aws("s3", "ls", "s3://cli-bucket/").stdout.strip().endswith("big.bin")

        # shoestring's own CLI sees the same buckets while the server runs
        ls = run_cli(project, "storage", "ls", "s3://cli-bucket")
        assert ls.returncode == 0 and "big.bin" in ls.stdout, ls.stderr
        note = tmp_path / "note.txt"
        note.write_text("from the cli")
        assert (
            run_cli(project, "storage", "cp", str(note), "s3://cli-bucket/notes/").returncode == 0
        )
        got = aws("s3", "cp", "s3://cli-bucket/notes/note.txt", "-").stdout
        assert got == "from the cli"
        assert run_cli(project, "storage", "rm", "s3://cli-bucket/notes/note.txt").returncode == 0
        assert run_cli(project, "storage", "mb", "s3://cli-public", "--public").returncode == 0
        listed = run_cli(project, "keys", "ls")
        assert key["access_key_id"] in listed.stdout
        assert key["secret_access_key"] not in listed.stdout
        assert run_cli(project, "keys", "rm", key["access_key_id"]).returncode == 0
    finally:
        server.terminate()
    assert "/_s3/cli-bucket" in server.log  # the requests were logged...
    assert key["secret_access_key"] not in server.log  # ...without the secret
