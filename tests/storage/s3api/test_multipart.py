"""Multipart uploads over the S3 API with boto3 (the 50 MiB one is in tests/e2e via the aws cli)."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import hashlib
import io
from typing import Any

from boto3.s3.transfer import TransferConfig

from tests.storage.conftest import ServerThread
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


KEYS = ["a/1", "a/1", "a/2", "b", "c d", "z", "ü/x"]  # a/1 twice: two uploads of one key


def test_list_multipart_uploads_pages_on_both_backends(backend_server: ServerThread) -> None:
    s3 = backend_server.client()
    s3.create_bucket(Bucket="pending")
    ids = [s3.create_multipart_upload(Bucket="pending", Key=key)["UploadId"] for key in KEYS]
    pages = list(
        s3.get_paginator("list_multipart_uploads").paginate(
            Bucket="pending", PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 4 and all(p["IsTruncated"] for p in pages[:-1])
    listed = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
    assert listed == list(zip(KEYS, ids, strict=True))  # one key's uploads in the order begun

    rolled = list(
        s3.get_paginator("list_multipart_uploads").paginate(
            Bucket="pending", Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    assert [u["Key"] for p in rolled for u in p.get("Uploads", [])] == ["b", "c d", "z"]
    assert [c["Prefix"] for p in rolled for c in p.get("CommonPrefixes", [])] == ["a/", "ü/"]

    after = s3.list_multipart_uploads(Bucket="pending", KeyMarker="a/1", UploadIdMarker=ids[0])
    assert [u["UploadId"] for u in after["Uploads"]] == ids[1:]
    past_key = s3.list_multipart_uploads(Bucket="pending", KeyMarker="a/1")
    assert [u["Key"] for u in past_key["Uploads"]] == KEYS[2:]
    under_a = s3.list_multipart_uploads(Bucket="pending", Prefix="a/", MaxUploads=2)
    assert [u["Key"] for u in under_a["Uploads"]] == ["a/1", "a/1"] and under_a["IsTruncated"]
    assert (under_a["NextKeyMarker"], under_a["NextUploadIdMarker"]) == ("a/1", ids[1])


def test_list_multipart_uploads_url_encoding_and_bad_arguments(s3: Any) -> None:
    s3.create_bucket(Bucket="enc")
    for key in ("c d", "ü/x"):
        s3.create_multipart_upload(Bucket="enc", Key=key)
    # boto3 decodes only what it asked to encode itself, so the keys arrive encoded.
    listed = s3.list_multipart_uploads(Bucket="enc", EncodingType="url", Delimiter="/")
    assert [u["Key"] for u in listed["Uploads"]] == ["c%20d"]
    assert listed["CommonPrefixes"] == [{"Prefix": "%C3%BC/"}]
    assert listed["EncodingType"] == "url"
    assert code_of(lambda: s3.list_multipart_uploads(Bucket="enc", MaxUploads=-1)) == (
        "InvalidArgument"
    )
    assert code_of(lambda: s3.list_multipart_uploads(Bucket="nope")) == "NoSuchBucket"
