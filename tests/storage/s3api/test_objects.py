"""Object operations over the S3 API, driven by boto3 against a real server."""

# ruff: noqa: S324 - S3 ETags are MD5s: the tests compute them to compare

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
import httpx
import pytest

from tests.storage.conftest import ServerThread


def error_code(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="things")
    return "things"


def test_put_get_with_metadata_and_headers(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="notes/ü.txt", Body=b"hello", ContentType="text/markdown",
        Metadata={"owner": "ada"}, CacheControl="max-age=60",
    )  # fmt: skip
    got = s3.get_object(Bucket=bucket, Key="notes/ü.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/markdown"
    assert got["Metadata"] == {"owner": "ada"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="notes/ü.txt")
    assert head["ContentLength"] == 5


def test_ranges_and_conditions(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")["ETag"]
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=2-4")
    assert (part["Body"].read(), part["ContentRange"]) == (b"234", "bytes 2-4/10")
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-3")["Body"].read() == b"789"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=20-30")
    assert error_code(excinfo) == "InvalidRange"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="r", IfMatch='"nope"')
    assert error_code(excinfo) == "PreconditionFailed"
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=later)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == b"0123456789"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="r", IfUnmodifiedSince=datetime(2000, 1, 1, tzinfo=UTC))
    assert error_code(excinfo) == "PreconditionFailed"
    overridden = s3.get_object(Bucket=bucket, Key="r", ResponseContentType="application/x-test")
    assert overridden["ContentType"] == "application/x-test"


def test_digests_are_verified(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumAlgorithm="SHA256")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k", Body=b"other", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
    assert error_code(excinfo) == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_missing_things_are_s3_errors(s3: Any, bucket: str) -> None:
    for call, code in (
        (lambda: s3.get_object(Bucket=bucket, Key="nope"), "NoSuchKey"),
        (lambda: s3.get_object(Bucket="nobucket", Key="k"), "NoSuchBucket"),
        (lambda: s3.list_objects_v2(Bucket="nobucket"), "NoSuchBucket"),
        (lambda: s3.create_bucket(Bucket="Bad_Name"), "InvalidBucketName"),
        (lambda: s3.put_object(Bucket=bucket, Key="x" * 1025, Body=b""), "KeyTooLongError"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            call()
        assert error_code(excinfo) == code
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="nope")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_objects_and_copy(s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode(), Metadata={"m": key})
    copied = s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "a"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"a").hexdigest()}"'
    assert s3.head_object(Bucket=bucket, Key="d")["Metadata"] == {"m": "a"}
    s3.copy_object(
        Bucket=bucket, Key="a", CopySource={"Bucket": bucket, "Key": "a"},
        MetadataDirective="REPLACE", Metadata={"m": "new"},
    )  # fmt: skip
    assert s3.head_object(Bucket=bucket, Key="a")["Metadata"] == {"m": "new"}
    deleted = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "never"}]}
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["a", "b", "never"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["c", "d"]


def test_listings_v1_v2_paginate_and_url_encode(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "b", "c d", "x/y/z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    paginator = s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == keys
    assert len(pages) == 3
    rolled = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/", "x/"]
    assert [o["Key"] for o in rolled["Contents"]] == ["b", "c d"]
    v1 = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    flat = [o["Key"] for p in v1 for o in p.get("Contents", [])]
    flat += [c["Prefix"] for p in v1 for c in p.get("CommonPrefixes", [])]
    assert sorted(flat) == ["a/", "b", "c d", "x/"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="b")
    assert [o["Key"] for o in after["Contents"]] == ["c d", "x/y/z"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="a/")
    assert [(v["Key"], v["VersionId"]) for v in versions["Versions"]] == [
        ("a/1", "null"),
        ("a/2", "null"),
    ]
    # boto3 asks for encoding-type=url and decodes the keys itself
    assert s3.list_objects(Bucket=bucket, Prefix="c")["Contents"][0]["Key"] == "c d"


@pytest.mark.parametrize(
    "key",
    [
        "../../../etc/passwd",
        "a/../../b",
        "/leading",
        "..",
        "./x",
        "a//b///",
        "trailing/",
        "%2e%2e/x",
        "ü/✓ key",
    ],
)
def test_hostile_keys_round_trip_exactly(
    server: ServerThread, s3: Any, bucket: str, key: str
) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"payload")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"payload"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    root = server.app.data_dir
    assert not (root.parent / "etc").exists()
    stray = [p for p in root.parent.rglob("*") if root not in p.parents and p != root]
    assert stray == []


def test_bad_xml_is_malformed_xml_and_changes_nothing(
    server: ServerThread, s3: Any, bucket: str
) -> None:
    from tests.storage.s3api.signing import signed_request

    key = server.new_key()
    s3.put_object(Bucket=bucket, Key="keep", Body=b"1")
    url = f"{server.url}/_s3/{bucket}?delete="
    for body in (
        b"<Delete><Object><Key>keep",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>',
        b"<NotDelete/>",
    ):
        response = signed_request("POST", url, key, body)
        assert response.status_code == 400, response.text
        assert b"<Code>MalformedXML</Code>" in response.content
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"1"


def test_oversized_body_is_refused(tmp_path: Any) -> None:
    from shoestring.config import StorageSettings
    from tests.storage.conftest import serve

    running = serve(tmp_path, StorageSettings(max_object_size=1000))
    try:
        s3 = running.client()
        s3.create_bucket(Bucket="small")
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.put_object(Bucket="small", Key="k", Body=b"x" * 1001)
        assert error_code(excinfo) == "EntityTooLarge"
    finally:
        running.stop()


def test_unknown_path_under_prefix_never_500s(server: ServerThread) -> None:
    for method, path in (
        ("GET", "/_s3/%ff%fe"),
        ("PATCH", "/_s3/b/k"),
        ("POST", "/_s3/b"),
        ("GET", "/_s3/b/k?uploadId=x"),
    ):
        response = httpx.request(method, server.url + path)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert response.content.startswith(b"<?xml")


def test_a_listing_of_no_keys_is_not_truncated(s3: Any, bucket: str) -> None:
    listed = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert listed["IsTruncated"] is False and listed["KeyCount"] == 0
    assert "NextContinuationToken" not in listed


def test_an_unsatisfiable_range_says_how_big_the_object_is(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="open", ACL="public-read")
    s3.put_object(Bucket="open", Key="five", Body=b"12345")
    answer = httpx.get(server.url + "/_s3/open/five", headers={"Range": "bytes=100-"})
    assert answer.status_code == 416 and answer.headers["content-range"] == "bytes */5"
    assert b"<Code>InvalidRange</Code>" in answer.content


def test_keys_with_carriage_returns_list_exactly(
    server: ServerThread, s3: Any, bucket: str
) -> None:
    from defusedxml.ElementTree import fromstring

    from tests.storage.s3api.signing import signed_request

    keys = ["crlf\r\nkey", "line\rbreak", "tab\tkey"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # Without encoding-type=url (which boto3 always asks for): an XML parser reads
    # a raw CR as a newline, so it must arrive as a character reference.
    for query in ("", "?list-type=2"):
        answer = signed_request("GET", f"{server.url}/_s3/{bucket}{query}", server.new_key())
        document = fromstring(answer.content)
        listed = [e.text for e in document.iter() if e.tag.endswith("}Key")]
        assert listed == keys, query


def test_content_language_and_expires_are_kept(backend_server: ServerThread) -> None:
    s3 = backend_server.client()
    s3.create_bucket(Bucket="meta")
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {
        "ContentType": "text/plain", "ContentLanguage": "de-CH", "Expires": expires,
        "ContentDisposition": "inline", "ContentEncoding": "identity", "CacheControl": "no-cache",
    }  # fmt: skip
    s3.put_object(Bucket="meta", Key="put", Body=b"x", **headers)
    upload = s3.create_multipart_upload(Bucket="meta", Key="mp", **headers)["UploadId"]
    part = s3.upload_part(Bucket="meta", Key="mp", UploadId=upload, PartNumber=1, Body=b"y")
    s3.complete_multipart_upload(
        Bucket="meta", Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    s3.copy_object(
        Bucket="meta", Key="copy", CopySource="meta/put", MetadataDirective="REPLACE", **headers
    )
    for key in ("put", "mp", "copy"):
        for got in (s3.head_object(Bucket="meta", Key=key), s3.get_object(Bucket="meta", Key=key)):
            assert got["ContentLanguage"] == "de-CH", key
            assert got["Expires"] == expires, key
            assert (got["ContentDisposition"], got["CacheControl"]) == ("inline", "no-cache")
            assert got["ContentEncoding"] == "identity"
