"""Multipart uploads over the S3 API with boto3 (the 50 MiB one is in tests/e2e via the aws cli)."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import hashlib
import io
from typing import Any

from boto3.s3.transfer import TransferConfig

from tests.storage.s3api.test_auth import code_of

MIB = 1024 * 1024


def test_upload_fileobj_goes_multipart(s3: Any) -> None:
    s3.create_bucket(Bucket="mp1")
    data = bytes(range(256)) * (11 * MIB // 256)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_fileobj(io.BytesIO(data), "mp1", "big.bin", Config=config)
    head = s3.head_object(Bucket="mp1", Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')
    out = io.BytesIO()
    s3.download_fileobj("mp1", "big.bin", out, Config=config)
    assert hashlib.md5(out.getvalue()).digest() == hashlib.md5(data).digest()


def test_low_level_multipart_operations(s3: Any) -> None:
    s3.create_bucket(Bucket="mp2")
    s3.put_object(Bucket="mp2", Key="source", Body=b"s" * (5 * MIB))
    upload = s3.create_multipart_upload(Bucket="mp2", Key="obj", ContentType="text/plain")[
        "UploadId"
    ]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mp2")["Uploads"]] == [upload]
    copied = s3.upload_part_copy(
        Bucket="mp2", Key="obj", UploadId=upload, PartNumber=1,
        CopySource={"Bucket": "mp2", "Key": "source"},
    )["CopyPartResult"]["ETag"]  # fmt: skip
    small = s3.upload_part(Bucket="mp2", Key="obj", UploadId=upload, PartNumber=2, Body=b"end")[
        "ETag"
    ]
    parts = s3.list_parts(Bucket="mp2", Key="obj", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MIB), (2, 3)]
    assert (
        code_of(
            lambda: s3.complete_multipart_upload(
                Bucket="mp2",
                Key="obj",
                UploadId=upload,
                MultipartUpload={
                    "Parts": [{"PartNumber": 2, "ETag": small}, {"PartNumber": 1, "ETag": copied}]
                },
            )
        )
        == "InvalidPartOrder"
    )
    s3.complete_multipart_upload(
        Bucket="mp2", Key="obj", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": copied}, {"PartNumber": 2, "ETag": small}]},
    )  # fmt: skip
    got = s3.get_object(Bucket="mp2", Key="obj")
    assert got["ContentLength"] == 5 * MIB + 3 and got["ContentType"] == "text/plain"
    assert got["Body"].read()[-4:] == b"send"
    assert (
        code_of(lambda: s3.list_parts(Bucket="mp2", Key="obj", UploadId=upload)) == "NoSuchUpload"
    )


def test_abort_and_too_small_parts(s3: Any) -> None:
    s3.create_bucket(Bucket="mp3")
    upload = s3.create_multipart_upload(Bucket="mp3", Key="o")["UploadId"]
    one = s3.upload_part(Bucket="mp3", Key="o", UploadId=upload, PartNumber=1, Body=b"tiny")["ETag"]
    two = s3.upload_part(Bucket="mp3", Key="o", UploadId=upload, PartNumber=2, Body=b"tiny")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": two}]}
    assert (
        code_of(
            lambda: s3.complete_multipart_upload(
                Bucket="mp3", Key="o", UploadId=upload, MultipartUpload=parts
            )
        )
        == "EntityTooSmall"
    )
    s3.abort_multipart_upload(Bucket="mp3", Key="o", UploadId=upload)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="mp3")
    assert (
        code_of(lambda: s3.abort_multipart_upload(Bucket="mp3", Key="o", UploadId=upload))
        == "NoSuchUpload"
    )
