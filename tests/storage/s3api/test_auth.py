"""SigV4 over the S3 API: who may do what, and the signatures that are refused."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from shoestring.config import StorageSettings
from shoestring.storage.credentials import NewKey
from shoestring.storage.s3api.sigv4 import presign_url
from tests.storage.conftest import ServerThread, s3_client, serve
from tests.storage.s3api.signing import signed_chunks, signed_request, unsigned_trailer_put


def code_of(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call()
    return str(excinfo.value.response["Error"]["Code"])


def test_wrong_secret_and_unknown_key_are_refused(server: ServerThread, s3: Any) -> None:
    key = server.new_key()
    wrong = s3_client(server.url + "/_s3", key.key.access_key_id, "not-the-secret")
    assert code_of(lambda: wrong.list_buckets()) == "SignatureDoesNotMatch"
    unknown = s3_client(server.url + "/_s3", "SSUNKNOWNUNKNOWN0000", "whatever")
    assert code_of(lambda: unknown.create_bucket(Bucket="x1x")) == "InvalidAccessKeyId"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == []


def test_expired_and_skewed_signatures(server: ServerThread, s3: Any) -> None:
    key = server.new_key()
    s3.create_bucket(Bucket="clock")
    s3.put_object(Bucket="clock", Key="k", Body=b"v")
    url = server.url + "/_s3/clock/k"
    expired = presign_url(
        method="GET", url=url, access_key_id=key.key.access_key_id, secret=key.secret_access_key,
        region="us-east-1", expires=60, now=datetime.now(UTC) - timedelta(minutes=5),
    )  # fmt: skip
    response = httpx.get(expired)
    assert response.status_code == 403 and b"Request has expired" in response.content
    skewed = signed_request("GET", url, key, now=datetime.now(UTC) - timedelta(hours=1))
    assert skewed.status_code == 403 and b"RequestTimeTooSkewed" in skewed.content
    assert signed_request("GET", url, key).content == b"v"


def test_tampered_presigned_url_is_refused(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="tamper")
    s3.put_object(Bucket="tamper", Key="a", Body=b"secret a")
    s3.put_object(Bucket="tamper", Key="b", Body=b"secret b")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "tamper", "Key": "a"})
    assert httpx.get(url).content == b"secret a"
    response = httpx.get(url.replace("/tamper/a?", "/tamper/b?"))
    assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content


def test_keys_are_scoped_to_buckets_and_rights(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="mine")
    s3.create_bucket(Bucket="theirs")
    s3.put_object(Bucket="theirs", Key="k", Body=b"x")
    reader = server.client(server.new_key("mine", read=True, write=False))
    assert code_of(lambda: reader.put_object(Bucket="mine", Key="k", Body=b"x")) == "AccessDenied"
    assert code_of(lambda: reader.get_object(Bucket="theirs", Key="k")) == "AccessDenied"
    assert reader.list_objects_v2(Bucket="mine")["KeyCount"] == 0
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == ["mine"]
    writer = server.client(server.new_key("mine", read=False, write=True))
    writer.put_object(Bucket="mine", Key="k", Body=b"x")
    assert code_of(lambda: writer.get_object(Bucket="mine", Key="k")) == "AccessDenied"


def test_anonymous_get_only_on_public_read_buckets(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="private")
    s3.create_bucket(Bucket="public", ACL="public-read")
    for name in ("private", "public"):
        s3.put_object(Bucket=name, Key="index.html", Body=b"<h1>hi</h1>", ContentType="text/html")
    assert httpx.get(server.url + "/_s3/public/index.html").content == b"<h1>hi</h1>"
    assert httpx.head(server.url + "/_s3/public/index.html").status_code == 200
    assert httpx.get(server.url + "/_s3/private/index.html").status_code == 403
    assert httpx.get(server.url + "/_s3/public").status_code == 403  # no anonymous listing
    assert httpx.put(server.url + "/_s3/public/x", content=b"x").status_code == 403
    assert httpx.delete(server.url + "/_s3/public/index.html").status_code == 403
    s3.put_bucket_acl(Bucket="public", ACL="private")
    server.app.storage  # noqa: B018
    import time

    time.sleep(1.1)  # the cached bucket config of other processes expires within a second
    assert httpx.get(server.url + "/_s3/public/index.html").status_code == 403


def test_payload_hash_is_verified(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="hashed")
    key = server.new_key()
    url = server.url + "/_s3/hashed/k"
    lying = signed_request("PUT", url, key, b"real body", payload_hash="0" * 64)
    assert lying.status_code == 400 and b"XAmzContentSHA256Mismatch" in lying.content
    assert code_of(lambda: s3.head_object(Bucket="hashed", Key="k")) == "404"


def test_unsigned_payload_trailer_upload(server: ServerThread, s3: Any) -> None:
    """What boto3 sends by default over HTTPS: plain chunks, then a CRC32 trailer."""
    import base64
    import zlib

    s3.create_bucket(Bucket="trailer")
    key = server.new_key()
    url = server.url + "/_s3/trailer/k"

    def crc32(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    data = b"chunk me " * 5000
    ok = unsigned_trailer_put(url, key, data, "x-amz-checksum-crc32", crc32(data))
    assert ok.status_code == 200, ok.text
    assert s3.get_object(Bucket="trailer", Key="k")["Body"].read() == data
    bad = unsigned_trailer_put(url, key, b"other", "x-amz-checksum-crc32", crc32(b"not it"))
    assert bad.status_code == 400 and b"BadDigest" in bad.content
    assert s3.get_object(Bucket="trailer", Key="k")["Body"].read() == data


def _chunked_put(
    server: ServerThread, key: NewKey, body: list[bytes], *, tamper: bool
) -> httpx.Response:
    from shoestring.storage.s3api import sigv4

    now = datetime.now(UTC)
    timestamp = now.strftime(sigv4.DATE_FORMAT)
    url = server.url + "/_s3/signed/obj"
    decoded = sum(len(c) for c in body)
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
    }
    # Sign the headers first to learn the seed signature, then frame the body with it.
    probe: dict[str, str] = {}

    def capture(request: httpx.Request) -> httpx.Response:
        probe["auth"] = request.headers["authorization"]
        return httpx.Response(200)

    import unittest.mock

    with unittest.mock.patch(
        "httpx.request", lambda *a, **k: capture(httpx.Request(*a[:2], headers=k["headers"]))
    ):
        signed_request(
            "PUT", url, key, headers=headers, now=now, payload_hash=sigv4.STREAMING_SIGNED
        )
    seed = probe["auth"].rsplit("Signature=", 1)[1]
    framed = signed_chunks(key, timestamp, seed, body, tamper=tamper)
    return signed_request(
        "PUT", url, key, framed, headers=headers, now=now, payload_hash=sigv4.STREAMING_SIGNED
    )


def test_signed_aws_chunked_upload(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="signed")
    key = server.new_key()
    ok = _chunked_put(server, key, [b"a" * 70000, b"b" * 100], tamper=False)
    assert ok.status_code == 200, ok.text
    assert s3.get_object(Bucket="signed", Key="obj")["Body"].read() == b"a" * 70000 + b"b" * 100
    bad = _chunked_put(server, key, [b"a" * 10], tamper=True)
    assert bad.status_code == 403 and b"SignatureDoesNotMatch" in bad.content
    assert s3.get_object(Bucket="signed", Key="obj")["ContentLength"] == 70100


def test_secret_keys_are_stored_encrypted(server: ServerThread) -> None:
    key = server.new_key()
    data = server.app.settings.data_dir
    on_disk = b"".join(path.read_bytes() for path in data.rglob("*") if path.is_file())
    assert key.key.access_key_id.encode() in on_disk  # the keys were written here...
    assert key.secret_access_key.encode() not in on_disk  # ...their secrets only sealed


@pytest.fixture
def named_host(monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3.example.test` and every bucket name under it resolve to loopback, in this process."""
    resolve = socket.getaddrinfo

    def loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith("s3.example.test"):
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    return "s3.example.test"


@pytest.mark.parametrize("style", ["virtual", "path"])
def test_signed_requests_on_the_api_host_in_both_addressing_styles(
    tmp_path: Path, named_host: str, style: str
) -> None:
    server = serve(tmp_path, StorageSettings(api_host=named_host))
    try:
        key = server.new_key()
        endpoint = f"http://{named_host}:{server.port}"
        styled = s3_client(
            endpoint, key.key.access_key_id, key.secret_access_key, s3={"addressing_style": style}
        )
        styled.create_bucket(Bucket="pics")
        styled.put_object(Bucket="pics", Key="cat/1.jpg", Body=b"meow")
        assert styled.get_object(Bucket="pics", Key="cat/1.jpg")["Body"].read() == b"meow"
        listed = styled.list_objects_v2(Bucket="pics", Prefix="cat/")
        assert [o["Key"] for o in listed["Contents"]] == ["cat/1.jpg"]
        wrong = s3_client(endpoint, key.key.access_key_id, "nope", s3={"addressing_style": style})
        assert code_of(lambda: wrong.get_object(Bucket="pics", Key="cat/1.jpg")) == (
            "SignatureDoesNotMatch"
        )
    finally:
        server.stop()


def test_a_bucket_host_takes_keys_that_look_like_the_path_prefix(
    tmp_path: Path, named_host: str
) -> None:
    server = serve(tmp_path, StorageSettings(api_host=named_host))
    try:
        key = server.new_key()
        endpoint = f"http://{named_host}:{server.port}"
        virtual = s3_client(
            endpoint, key.key.access_key_id, key.secret_access_key,
            s3={"addressing_style": "virtual"},
        )  # fmt: skip
        virtual.create_bucket(Bucket="pics")
        virtual.put_object(Bucket="pics", Key="_s3/newbucket", Body=b"a key, not a bucket")
        assert [b["Name"] for b in virtual.list_buckets()["Buckets"]] == ["pics"]
        got = virtual.get_object(Bucket="pics", Key="_s3/newbucket")["Body"].read()
        assert got == b"a key, not a bucket"
    finally:
        server.stop()
