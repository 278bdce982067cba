"""x-amz-checksum-* over the S3 API: every algorithm verified, and a wrong one stores nothing.

Over HTTPS boto3 sends its checksum in an aws-chunked trailer (CRC32 unless
told otherwise); over HTTP, and whenever the caller gives the value, in a header.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from shoestring.storage.digests import CHECKSUMS
from tests.storage.conftest import ServerThread, serve
from tests.storage.s3api.signing import signed_request, unsigned_trailer_put
from tests.storage.s3api.test_auth import code_of

MIB = 1024 * 1024
# What boto3 computes itself (ChecksumAlgorithm=...); MD5 it only passes on.
ALGORITHMS = [
    "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "XXHASH64", "XXHASH3", "XXHASH128",
]  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = serve(tmp_path_factory.mktemp("tls"), tls=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tls_s3(tls_server: ServerThread) -> Any:
    s3 = tls_server.client()
    s3.create_bucket(Bucket="sums")
    return s3


def refusal(call: Any) -> dict[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call()
    return dict(excinfo.value.response["Error"])


def test_check_values_of_the_crcs() -> None:
    # The standard check inputs and values of CRC-32C and CRC-64/NVME.
    for name, expected in (("crc32c", 0xE3069283), ("crc64nvme", 0xAE8B14860A799888)):
        hasher = CHECKSUMS[name][0]()
        hasher.update(b"1234")
        hasher.update(b"56789")
        assert int.from_bytes(hasher.digest(), "big") == expected


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trailer_and_header_checksums_are_verified(tls_s3: Any, algorithm: str) -> None:
    member, key = f"Checksum{algorithm}", f"obj-{algorithm}"
    trailers: list[str] = []

    def record(request: Any, **_: Any) -> None:
        trailers.append(request.headers.get("x-amz-trailer", b"").decode())

    tls_s3.meta.events.register("before-send.s3.PutObject", record)
    try:
        sent = tls_s3.put_object(Bucket="sums", Key=key, Body=b"first", ChecksumAlgorithm=algorithm)
    finally:
        tls_s3.meta.events.unregister("before-send.s3.PutObject", record)
    assert trailers == [f"x-amz-checksum-{algorithm.lower()}"]
    other = tls_s3.put_object(Bucket="sums", Key="x", Body=b"other", ChecksumAlgorithm=algorithm)
    assert sent[member] != other[member]  # each echoed as verified from its trailer
    error = refusal(
        lambda: tls_s3.put_object(Bucket="sums", Key=key, Body=b"second", **{member: other[member]})
    )
    assert (error["Code"], error["Message"]) == (
        "BadDigest",
        f"The {algorithm} you specified did not match the calculated checksum.",
    )
    got = tls_s3.get_object(Bucket="sums", Key=key)  # the value of the trailer was kept
    assert (got["Body"].read(), got[member], got["ChecksumType"]) == (
        b"first", sent[member], "FULL_OBJECT",
    )  # fmt: skip


def test_multipart_upload_with_crc32c_part_trailers(tls_s3: Any) -> None:
    data = bytes(range(256)) * (6 * MIB // 256)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    tls_s3.upload_fileobj(
        io.BytesIO(data), "sums", "big", ExtraArgs={"ChecksumAlgorithm": "CRC32C"}, Config=config
    )
    head = tls_s3.head_object(Bucket="sums", Key="big", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-2"') and head["ChecksumCRC32C"].endswith("-2")
    assert head["ChecksumType"] == "COMPOSITE"
    assert tls_s3.get_object(Bucket="sums", Key="big")["Body"].read() == data


def test_a_wrong_part_checksum_stores_no_part(s3: Any) -> None:
    s3.create_bucket(Bucket="parts")
    upload = s3.create_multipart_upload(Bucket="parts", Key="o", ChecksumAlgorithm="CRC64NVME")
    args = {"Bucket": "parts", "Key": "o", "UploadId": upload["UploadId"]}
    good = s3.upload_part(**args, PartNumber=1, Body=b"one", ChecksumAlgorithm="CRC64NVME")
    wrong = good["ChecksumCRC64NVME"]
    error = refusal(
        lambda: s3.upload_part(**args, PartNumber=2, Body=b"two", ChecksumCRC64NVME=wrong)
    )
    assert error["Code"] == "BadDigest" and "CRC64NVME" in error["Message"]
    assert [p["PartNumber"] for p in s3.list_parts(**args)["Parts"]] == [1]


def test_md5_checksum_header(s3: Any) -> None:
    s3.create_bucket(Bucket="md5")
    right = base64.b64encode(hashlib.md5(b"data").digest()).decode()  # noqa: S324
    s3.put_object(Bucket="md5", Key="k", Body=b"data", ChecksumMD5=right)
    assert code_of(
        lambda: s3.put_object(Bucket="md5", Key="k", Body=b"new", ChecksumMD5=right)
    ) == ("BadDigest")
    assert s3.get_object(Bucket="md5", Key="k")["Body"].read() == b"data"


def test_malformed_doubled_and_missing_checksums_are_invalid_requests(
    server: ServerThread, s3: Any
) -> None:
    s3.create_bucket(Bucket="odd")
    key = server.new_key()
    url = server.url + "/_s3/odd/k"
    crc32c = base64.b64encode((0xE3069283).to_bytes(4, "big")).decode()  # of b"123456789"
    for headers, message in (
        ({"x-amz-checksum-crc32c": "not base64!"}, "x-amz-checksum-crc32c header is invalid"),
        ({"x-amz-checksum-crc64nvme": crc32c}, "x-amz-checksum-crc64nvme header is invalid"),
        (
            {"x-amz-checksum-crc32c": crc32c, "x-amz-checksum-crc32": crc32c},
            "Multiple checksum Types are not allowed",
        ),
    ):
        response = signed_request("PUT", url, key, b"123456789", headers=headers)
        assert response.status_code == 400, response.text
        assert b"<Code>InvalidRequest</Code>" in response.content and message in response.text
    missing = unsigned_trailer_put(url, key, b"123456789", "x-amz-checksum-crc32c", None)
    assert b"<Code>InvalidRequest</Code>" in missing.content and "trailer" in missing.text
    wrong = unsigned_trailer_put(url, key, b"12345678", "x-amz-checksum-crc32c", crc32c)
    assert b"<Code>BadDigest</Code>" in wrong.content
    assert "Contents" not in s3.list_objects_v2(Bucket="odd")
    ok = unsigned_trailer_put(url, key, b"123456789", "x-amz-checksum-crc32c", crc32c)
    assert ok.status_code == 200 and ok.headers["x-amz-checksum-crc32c"] == crc32c
