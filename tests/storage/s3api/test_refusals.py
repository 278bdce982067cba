"""Requests the S3 API must refuse without changing anything, driven by boto3 and httpx.

Each names something S3 does but shoestring does not (tagging, a policy, an
old version, a part of a multipart object), or is malformed: the answer is
S3's error and every object, upload and bucket stays as it was.
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config
from defusedxml.ElementTree import fromstring

from tests.storage.conftest import ServerThread

MiB = 1024 * 1024


def refused(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call(**kwargs)
    response = excinfo.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="kept")
    s3.put_object(Bucket="kept", Key="k", Body=b"precious")
    return "kept"


def test_subresources_it_does_not_handle_are_501_and_change_nothing(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket="empty")
    tags = {"TagSet": [{"Key": "a", "Value": "b"}]}
    for call, kwargs in [
        (s3.put_object_tagging, {"Bucket": bucket, "Key": "k", "Tagging": tags}),
        (s3.put_object_acl, {"Bucket": bucket, "Key": "k", "ACL": "public-read"}),
        (s3.put_object_legal_hold, {"Bucket": bucket, "Key": "k", "LegalHold": {"Status": "ON"}}),
        (s3.get_object_tagging, {"Bucket": bucket, "Key": "k"}),
        (s3.delete_object_tagging, {"Bucket": bucket, "Key": "k"}),
        (s3.delete_bucket_policy, {"Bucket": "empty"}),
        (s3.delete_bucket_tagging, {"Bucket": "empty"}),
        (s3.get_bucket_policy, {"Bucket": bucket}),
    ]:
        assert refused(call, **kwargs) == ("NotImplemented", 501), call.__name__
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"kept", "empty"}


def test_deleting_a_version_that_never_existed_deletes_nothing(s3: Any, bucket: str) -> None:
    s3.delete_object(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
    deleted = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": "3HL4kqtJlcpXroDTDmJ"}]}
    )
    assert [d["Key"] for d in deleted["Deleted"]] == ["k"]  # as S3 reports it
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"
    s3.delete_object(Bucket=bucket, Key="k", VersionId="null")  # the one version there is
    assert refused(s3.head_object, Bucket=bucket, Key="k")[1] == 404


def test_an_abort_reaches_only_the_upload_of_its_bucket_and_key(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket="other")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"x" * 10)
    for where in ({"Bucket": "other", "Key": "big"}, {"Bucket": bucket, "Key": "not-big"}):
        code, _ = refused(s3.abort_multipart_upload, UploadId=upload, **where)
        assert code == "NoSuchUpload"
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"x" * 10


def test_anonymous_gets_cannot_choose_the_response_headers(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="public", ACL="public-read")
    s3.put_object(Bucket="public", Key="up.txt", Body=b"<script>alert(1)</script>")
    url = server.url + "/_s3/public/up.txt"
    plain = httpx.get(url)
    assert plain.status_code == 200 and plain.headers["content-type"] != "text/html"
    forced = httpx.get(url, params={"response-content-type": "text/html"})
    assert forced.status_code == 400 and b"<Code>InvalidRequest</Code>" in forced.content
    assert "text/html" not in forced.headers["content-type"]
    signed = s3.get_object(Bucket="public", Key="up.txt", ResponseContentType="text/plain")
    assert signed["ContentType"] == "text/plain"  # a caller with a key still may


def test_part_numbers_serve_the_parts_of_an_object(
    server: ServerThread, s3: Any, bucket: str
) -> None:
    whole = s3.get_object(Bucket=bucket, Key="k", PartNumber=1)
    assert whole["Body"].read() == b"precious"
    assert refused(s3.get_object, Bucket=bucket, Key="k", PartNumber=2)[1] == 416
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    bodies = [b"a" * 5 * MiB, b"b" * 5 * MiB, b"end"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in enumerate(bodies, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )  # fmt: skip
    for number, body in enumerate(bodies, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number)
        assert got["Body"].read() == body and got["PartsCount"] == 3
        start = sum(len(b) for b in bodies[: number - 1])
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{10 * MiB + 3}"
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)["ContentLength"] == 5 * MiB
    assert refused(s3.get_object, Bucket=bucket, Key="mp", PartNumber=4)[1] == 416
    # One stored before part sizes were kept: never the whole object where a part was asked.
    server.app.storage.backend.index.write(  # type: ignore[attr-defined]
        [("UPDATE objects SET parts = NULL WHERE key = ?", (b"mp",))]
    )
    assert refused(s3.get_object, Bucket=bucket, Key="mp", PartNumber=2) == ("NotImplemented", 501)


def test_upload_part_copy_takes_only_ranges_inside_the_source_and_its_conditions(
    s3: Any, bucket: str
) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    common = {"Bucket": bucket, "Key": "copy", "UploadId": upload, "PartNumber": 1}
    source = {"Bucket": bucket, "Key": "k"}  # 8 bytes
    for wrong in ("bytes=6-100", "bytes=5-2", "bytes=-5", "bytes=2-"):
        code, status = refused(
            s3.upload_part_copy, CopySource=source, CopySourceRange=wrong, **common
        )
        assert (code, status) in {("InvalidRange", 416), ("InvalidArgument", 400)}, wrong
    code, status = refused(
        s3.upload_part_copy, CopySource=source, CopySourceIfMatch='"nope"', **common
    )
    assert (code, status) == ("PreconditionFailed", 412)
    assert s3.list_parts(Bucket=bucket, Key="copy", UploadId=upload).get("Parts", []) == []
    copied = s3.upload_part_copy(CopySource=source, CopySourceRange="bytes=2-4", **common)
    assert copied["CopyPartResult"]["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="copy", UploadId=upload)["Parts"]
    assert [p["Size"] for p in listed] == [3]


def test_malformed_digests_and_control_characters_get_their_own_codes(
    server: ServerThread, s3: Any, bucket: str
) -> None:
    for md5 in ("notbase64!", base64.b64encode(b"short").decode()):
        code, status = refused(s3.put_object, Bucket=bucket, Key="k", Body=b"new", ContentMD5=md5)
        assert (code, status) == ("InvalidDigest", 400)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"
    anonymous = httpx.put(server.url + "/_s3/kept/nul%00byte", content=b"x")
    assert anonymous.status_code in (400, 403)
    document = fromstring(anonymous.content)  # well-formed, whatever the key held
    assert document.findtext("Code") in ("InvalidArgument", "AccessDenied")
    code, _ = refused(s3.put_object, Bucket=bucket, Key="nul\x01byte", Body=b"x")
    assert code == "InvalidArgument"


def test_a_payload_hash_that_is_none_is_invalid(server: ServerThread, s3: Any, bucket: str) -> None:
    from tests.storage.s3api.signing import signed_request

    url = f"{server.url}/_s3/{bucket}/k"
    answer = signed_request("PUT", url, server.new_key(), b"other", payload_hash="SHA-PLEASE")
    assert answer.status_code == 400 and b"InvalidArgument" in answer.content
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"


def test_a_client_signing_for_another_region_works_as_it_is(
    server: ServerThread, bucket: str
) -> None:
    key = server.new_key()
    elsewhere = boto3.client(
        "s3", endpoint_url=server.url + "/_s3", region_name="eu-west-1",
        aws_access_key_id=key.key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip
    assert elsewhere.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    # the signature covers the region named: a wrong secret still fails there
    wrong = boto3.client(
        "s3", endpoint_url=server.url + "/_s3", region_name="eu-west-1",
        aws_access_key_id=key.key.access_key_id, aws_secret_access_key="x" * 40,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        wrong.list_objects_v2(Bucket=bucket)
    assert excinfo.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_copying_a_version_that_never_existed_is_no_such_version(s3: Any, bucket: str) -> None:
    source = {"Bucket": bucket, "Key": "k", "VersionId": "3HL4kqtJlcpXroDTDmJ"}
    assert refused(s3.copy_object, Bucket=bucket, Key="copy", CopySource=source) == (
        "NoSuchVersion",
        404,
    )
    assert refused(s3.head_object, Bucket=bucket, Key="copy")[1] == 404
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={**source, "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"precious"


@pytest.mark.parametrize(
    "arguments",
    [
        {"Tagging": "a=b"},
        {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": "2030-01-01T00:00:00Z"},
        {"ObjectLockLegalHoldStatus": "ON"},
        {"ACL": "public-read"},
        {"ServerSideEncryption": "aws:kms"},
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
    ],
)
def test_writes_promising_what_is_not_kept_are_refused(
    s3: Any, bucket: str, arguments: dict[str, str]
) -> None:
    assert refused(s3.put_object, Bucket=bucket, Key="k", Body=b"lost", **arguments) == (
        "NotImplemented",
        501,
    )
    assert refused(s3.create_multipart_upload, Bucket=bucket, Key="k", **arguments)[1] == 501
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_what_is_kept_or_already_so_is_accepted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k2", Body=b"ok", ACL="private", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="k2")["Body"].read() == b"ok"


def test_a_continuation_token_it_did_not_give_is_invalid(s3: Any, bucket: str) -> None:
    for token in ("garbage", "YQ==", "!!!!"):
        assert refused(s3.list_objects_v2, Bucket=bucket, ContinuationToken=token) == (
            "InvalidArgument",
            400,
        )
    s3.put_object(Bucket=bucket, Key="k2", Body=b"2")
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["k2"]


def test_trailers_must_be_announced_and_agree_with_headers(
    server: ServerThread, s3: Any, bucket: str
) -> None:
    import zlib

    from tests.storage.s3api.signing import signed_request

    def crc32(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    data = b"new body"
    url = f"{server.url}/_s3/{bucket}/k"

    def put(trailer: str, headers: dict[str, str]) -> httpx.Response:
        framed = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + trailer.encode() + b"\r\n"
        headers = {
            "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            **headers,
        }  # fmt: skip
        return signed_request(
            "PUT", url, server.new_key(), framed, headers=headers,
            payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        )  # fmt: skip

    unannounced = put(f"x-amz-checksum-crc32:{crc32(data)}\r\n", {})
    assert unannounced.status_code == 400 and b"InvalidRequest" in unannounced.content
    contradicted = put(
        f"x-amz-checksum-crc32:{crc32(data)}\r\n",
        {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-checksum-crc32": crc32(b"other")},
    )
    assert contradicted.status_code == 400 and b"BadDigest" in contradicted.content
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious"
    agreed = put(
        f"x-amz-checksum-crc32:{crc32(data)}\r\n",
        {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-checksum-crc32": crc32(data)},
    )
    assert agreed.status_code == 200, agreed.text
