"""Checksums kept with objects and parts, and returned as S3 returns them, on both backends.

The expected values are computed here, independently of the server: zlib's
CRC32, hashlib's SHA-256, and awscrt's CRC64NVME (the library botocore uses).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

import httpx
import pytest
from awscrt import checksums as crt_checksums
from botocore.httpchecksum import StreamingChecksumBody

from tests.storage.conftest import ServerThread
from tests.storage.s3api.test_checksums import refusal

MIB = 1024 * 1024
FIRST = bytes(range(256)) * (5 * MIB // 256)  # a part must be 5 MiB, but the last
SECOND = b"the last part"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def crc64nvme(data: bytes) -> str:
    return b64(crt_checksums.crc64nvme(data).to_bytes(8, "big"))


def checksums(response: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in response.items() if k.startswith("Checksum")}


@pytest.fixture
def s3(backend_server: ServerThread) -> Any:
    client = backend_server.client()
    client.create_bucket(Bucket="sums")
    return client


def test_get_and_head_return_the_stored_checksum_in_checksum_mode(s3: Any) -> None:
    data = b"checked on the way in and on the way out"
    s3.put_object(Bucket="sums", Key="k", Body=data)  # boto3 sends a CRC32 by default
    got = s3.get_object(Bucket="sums", Key="k")  # ... and asks for it back by default
    assert checksums(got) == {"ChecksumCRC32": crc32(data), "ChecksumType": "FULL_OBJECT"}
    assert isinstance(got["Body"], StreamingChecksumBody)  # boto3 validated the body against it
    assert got["Body"].read() == data
    head = s3.head_object(Bucket="sums", Key="k", ChecksumMode="ENABLED")
    assert checksums(head) == {"ChecksumCRC32": crc32(data), "ChecksumType": "FULL_OBJECT"}
    assert checksums(s3.head_object(Bucket="sums", Key="k")) == {}  # not asked for


def test_the_algorithm_the_client_chose_is_kept(s3: Any) -> None:
    data = b"sixty-four bits"
    sent = s3.put_object(Bucket="sums", Key="k", Body=data, ChecksumAlgorithm="CRC64NVME")
    assert sent["ChecksumCRC64NVME"] == crc64nvme(data)
    got = s3.get_object(Bucket="sums", Key="k")
    assert checksums(got) == {"ChecksumCRC64NVME": crc64nvme(data), "ChecksumType": "FULL_OBJECT"}
    assert got["Body"].read() == data


def test_a_range_gets_no_checksum(s3: Any) -> None:
    s3.put_object(Bucket="sums", Key="k", Body=b"0123456789")
    part = s3.get_object(Bucket="sums", Key="k", Range="bytes=2-4", ChecksumMode="ENABLED")
    assert part["Body"].read() == b"234" and checksums(part) == {}
    head = s3.head_object(Bucket="sums", Key="k", Range="bytes=2-4", ChecksumMode="ENABLED")
    assert checksums(head) == {}


def test_copy_keeps_the_checksum_or_makes_the_one_named(s3: Any) -> None:
    data = b"copied"
    s3.put_object(Bucket="sums", Key="src", Body=data, ChecksumAlgorithm="CRC32")
    kept = s3.copy_object(Bucket="sums", Key="kept", CopySource="sums/src")["CopyObjectResult"]
    assert kept["ChecksumCRC32"] == crc32(data)
    head = s3.head_object(Bucket="sums", Key="kept", ChecksumMode="ENABLED")
    assert checksums(head) == {"ChecksumCRC32": crc32(data), "ChecksumType": "FULL_OBJECT"}
    s3.copy_object(Bucket="sums", Key="sha", CopySource="sums/src", ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket="sums", Key="sha", ChecksumMode="ENABLED")
    expected = b64(hashlib.sha256(data).digest())
    assert checksums(head) == {"ChecksumSHA256": expected, "ChecksumType": "FULL_OBJECT"}
    error = refusal(
        lambda: s3.copy_object(
            Bucket="sums", Key="bad", CopySource="sums/src", ChecksumAlgorithm="CRC7"
        )
    )
    assert error["Code"] == "InvalidRequest"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="sums")["Contents"]] == [
        "kept", "sha", "src",
    ]  # fmt: skip


def _upload(s3: Any, key: str, algorithm: str) -> tuple[str, list[dict[str, Any]]]:
    """A multipart upload of FIRST and SECOND with `algorithm`: its id and parts as listed."""
    upload = s3.create_multipart_upload(Bucket="sums", Key=key, ChecksumAlgorithm=algorithm)
    assert upload["ChecksumAlgorithm"] == algorithm
    args = {"Bucket": "sums", "Key": key, "UploadId": upload["UploadId"]}
    member = f"Checksum{algorithm}"
    parts = []
    for number, body in ((1, FIRST), (2, SECOND)):
        sent = s3.upload_part(**args, PartNumber=number, Body=body, ChecksumAlgorithm=algorithm)
        parts.append({"PartNumber": number, "ETag": sent["ETag"], member: sent[member]})
    return upload["UploadId"], parts


def test_multipart_crc32_is_composite(s3: Any) -> None:
    upload_id, parts = _upload(s3, "composite", "CRC32")
    args = {"Bucket": "sums", "Key": "composite", "UploadId": upload_id}
    listed = s3.list_parts(**args)["Parts"]
    assert [p["ChecksumCRC32"] for p in listed] == [crc32(FIRST), crc32(SECOND)]
    done = s3.complete_multipart_upload(**args, MultipartUpload={"Parts": parts})
    # CRC32 of the parts' big-endian CRC32s, then the part count.
    of_parts = zlib.crc32(
        zlib.crc32(FIRST).to_bytes(4, "big") + zlib.crc32(SECOND).to_bytes(4, "big")
    )
    expected = f"{b64(of_parts.to_bytes(4, 'big'))}-2"
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (expected, "COMPOSITE")
    got = s3.get_object(Bucket="sums", Key="composite")
    assert checksums(got) == {"ChecksumCRC32": expected, "ChecksumType": "COMPOSITE"}
    assert got["Body"].read() == FIRST + SECOND


def test_multipart_sha256_is_composite(s3: Any) -> None:
    upload_id, parts = _upload(s3, "sha", "SHA256")
    s3.complete_multipart_upload(
        Bucket="sums", Key="sha", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    of_parts = hashlib.sha256(hashlib.sha256(FIRST).digest() + hashlib.sha256(SECOND).digest())
    head = s3.head_object(Bucket="sums", Key="sha", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == f"{b64(of_parts.digest())}-2"


def test_multipart_crc64nvme_is_full_object(s3: Any) -> None:
    upload_id, parts = _upload(s3, "full", "CRC64NVME")
    done = s3.complete_multipart_upload(
        Bucket="sums", Key="full", UploadId=upload_id, MultipartUpload={"Parts": parts},
        ChecksumCRC64NVME=crc64nvme(FIRST + SECOND), ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert done["ChecksumCRC64NVME"] == crc64nvme(FIRST + SECOND)
    got = s3.get_object(Bucket="sums", Key="full")
    assert checksums(got) == {
        "ChecksumCRC64NVME": crc64nvme(FIRST + SECOND), "ChecksumType": "FULL_OBJECT",
    }  # fmt: skip
    assert isinstance(got["Body"], StreamingChecksumBody)
    assert got["Body"].read() == FIRST + SECOND


def test_a_multipart_upload_naming_no_algorithm_gets_s3s_default(s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket="sums", Key="plain")
    args = {"Bucket": "sums", "Key": "plain", "UploadId": upload["UploadId"]}
    parts = [
        {"PartNumber": n, "ETag": s3.upload_part(**args, PartNumber=n, Body=body)["ETag"]}
        for n, body in ((1, FIRST), (2, SECOND))
    ]
    s3.complete_multipart_upload(**args, MultipartUpload={"Parts": parts})
    head = s3.head_object(Bucket="sums", Key="plain", ChecksumMode="ENABLED")
    assert checksums(head) == {
        "ChecksumCRC64NVME": crc64nvme(FIRST + SECOND), "ChecksumType": "FULL_OBJECT",
    }  # fmt: skip


def test_a_completion_listing_a_wrong_part_checksum_creates_nothing(s3: Any) -> None:
    upload_id, parts = _upload(s3, "wrong", "CRC32")
    args = {"Bucket": "sums", "Key": "wrong", "UploadId": upload_id}
    wrong = [parts[0], {**parts[1], "ChecksumCRC32": crc32(b"something else")}]
    error = refusal(lambda: s3.complete_multipart_upload(**args, MultipartUpload={"Parts": wrong}))
    assert error["Code"] == "InvalidPart"
    missing = [parts[0], {"PartNumber": 2, "ETag": parts[1]["ETag"]}]
    error = refusal(
        lambda: s3.complete_multipart_upload(**args, MultipartUpload={"Parts": missing})
    )
    assert error["Code"] == "InvalidRequest"
    malformed = [parts[0], {**parts[1], "ChecksumCRC32": "not base64!"}]
    error = refusal(
        lambda: s3.complete_multipart_upload(**args, MultipartUpload={"Parts": malformed})
    )
    assert error["Code"] == "InvalidRequest"
    error = refusal(
        lambda: s3.complete_multipart_upload(
            **args, MultipartUpload={"Parts": parts}, ChecksumCRC32="AAAA-x"
        )
    )
    assert error["Code"] == "InvalidRequest"
    assert "Contents" not in s3.list_objects_v2(Bucket="sums")
    assert len(s3.list_parts(**args)["Parts"]) == 2  # the upload is still there to complete
    s3.complete_multipart_upload(**args, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket="sums", Key="wrong")["Body"].read() == FIRST + SECOND


def test_a_completion_asserting_a_wrong_object_checksum_creates_nothing(s3: Any) -> None:
    upload_id, parts = _upload(s3, "whole", "CRC64NVME")
    args = {"Bucket": "sums", "Key": "whole", "UploadId": upload_id}
    wrong = {"ChecksumCRC64NVME": crc64nvme(FIRST), "ChecksumType": "FULL_OBJECT"}
    error = refusal(
        lambda: s3.complete_multipart_upload(**args, MultipartUpload={"Parts": parts}, **wrong)
    )
    assert error["Code"] == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket="sums")


def test_parts_must_use_the_uploads_algorithm(s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket="sums", Key="k", ChecksumAlgorithm="CRC32C")
    args = {"Bucket": "sums", "Key": "k", "UploadId": upload["UploadId"]}
    error = refusal(
        lambda: s3.upload_part(**args, PartNumber=1, Body=b"x", ChecksumAlgorithm="SHA256")
    )
    assert error["Code"] == "InvalidRequest" and "mismatch" in error["Message"]
    assert "Parts" not in s3.list_parts(**args)


@pytest.mark.parametrize(
    ("algorithm", "kind"), [("CRC64NVME", "COMPOSITE"), ("SHA1", "FULL_OBJECT")]
)
def test_an_impossible_checksum_type_is_refused(s3: Any, algorithm: str, kind: str) -> None:
    error = refusal(
        lambda: s3.create_multipart_upload(
            Bucket="sums", Key="k", ChecksumAlgorithm=algorithm, ChecksumType=kind
        )
    )
    assert error["Code"] == "InvalidRequest" and kind in error["Message"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="sums")


def test_listings_name_each_objects_checksum_algorithm_and_type(s3: Any) -> None:
    s3.put_object(Bucket="sums", Key="a-crc32", Body=b"one")  # boto3's default: CRC32
    s3.put_object(Bucket="sums", Key="b-sha256", Body=b"two", ChecksumAlgorithm="SHA256")
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket="sums")["Contents"]}
    assert (listed["a-crc32"]["ChecksumAlgorithm"], listed["a-crc32"]["ChecksumType"]) == (
        ["CRC32"], "FULL_OBJECT",
    )  # fmt: skip
    assert listed["b-sha256"]["ChecksumAlgorithm"] == ["SHA256"]
    assert listed["b-sha256"]["Size"] == 3  # the rest of the entry as before
    v1 = {o["Key"]: o for o in s3.list_objects(Bucket="sums")["Contents"]}
    assert v1["b-sha256"]["ChecksumAlgorithm"] == ["SHA256"]


def test_an_upload_without_a_checksum_gets_s3s_default(s3: Any) -> None:
    # A browser's PUT to a presigned URL sends no checksum: S3 (since 2025) and
    # shoestring keep a CRC64NVME of it, and downloads are checked against that.
    data = b"uploaded from a browser"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "sums", "Key": "up"})
    assert httpx.put(url, content=data).status_code == 200
    head = s3.head_object(Bucket="sums", Key="up", ChecksumMode="ENABLED")
    assert checksums(head) == {"ChecksumCRC64NVME": crc64nvme(data), "ChecksumType": "FULL_OBJECT"}
    assert s3.get_object(Bucket="sums", Key="up")["Body"].read() == data  # validated
