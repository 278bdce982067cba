"""Bucket operations over the S3 API: lifecycle, location, versioning, ACL, CORS."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import httpx
import pytest

from tests.storage.conftest import ServerThread
from tests.storage.s3api.test_auth import code_of


def test_bucket_lifecycle(s3: Any) -> None:
    s3.create_bucket(Bucket="life")
    s3.head_bucket(Bucket="life")
    assert code_of(lambda: s3.create_bucket(Bucket="life")) == "BucketAlreadyOwnedByYou"
    assert s3.get_bucket_location(Bucket="life")["LocationConstraint"] is None
    assert "Status" not in s3.get_bucket_versioning(Bucket="life")
    s3.put_object(Bucket="life", Key="k", Body=b"x")
    assert code_of(lambda: s3.delete_bucket(Bucket="life")) == "BucketNotEmpty"
    s3.delete_object(Bucket="life", Key="k")
    s3.delete_bucket(Bucket="life")
    assert code_of(lambda: s3.head_bucket(Bucket="life")) == "404"


def test_acl_reports_public_read(s3: Any) -> None:
    s3.create_bucket(Bucket="acl", ACL="public-read")
    grants = s3.get_bucket_acl(Bucket="acl")["Grants"]
    assert any(g["Permission"] == "READ" for g in grants)


def test_cors_lets_a_browser_upload_with_a_presigned_url(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="uploads")
    assert code_of(lambda: s3.get_bucket_cors(Bucket="uploads")) == "NoSuchCORSConfiguration"
    rules = [
        {
            "AllowedOrigins": ["https://app.example"],
            "AllowedMethods": ["PUT", "GET"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        }
    ]
    s3.put_bucket_cors(Bucket="uploads", CORSConfiguration={"CORSRules": rules})
    assert s3.get_bucket_cors(Bucket="uploads")["CORSRules"][0]["AllowedOrigins"] == [
        "https://app.example"
    ]
    url = server.url + "/_s3/uploads/photo.jpg"
    preflight = httpx.options(
        url,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-max-age"] == "600"
    denied = httpx.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
    )
    assert denied.status_code == 403
    presigned = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "uploads", "Key": "photo.jpg"}, ExpiresIn=60
    )
    put = httpx.put(presigned, content=b"jpeg", headers={"Origin": "https://app.example"})
    assert put.status_code == 200
    assert put.headers["access-control-allow-origin"] == "https://app.example"
    assert put.headers["access-control-expose-headers"] == "ETag"
    s3.delete_bucket_cors(Bucket="uploads")
    assert code_of(lambda: s3.get_bucket_cors(Bucket="uploads")) == "NoSuchCORSConfiguration"


def test_versioning_can_be_suspended_but_never_enabled(backend_server: ServerThread) -> None:
    s3 = backend_server.client()
    s3.create_bucket(Bucket="vers", ACL="public-read")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    error = excinfo.value.response
    assert error["Error"]["Code"] == "NotImplemented"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert "unversioned" in error["Error"]["Message"]
    assert "Status" not in s3.get_bucket_versioning(Bucket="vers")
    assert (
        code_of(
            lambda: s3.put_bucket_versioning(
                Bucket="vers", VersioningConfiguration={"Status": "On"}
            )
        )
        == "IllegalVersioningConfigurationException"
    )

    s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="vers")["Status"] == "Suspended"
    assert any(g["Permission"] == "READ" for g in s3.get_bucket_acl(Bucket="vers")["Grants"])
    for body in (b"1", b"2"):
        s3.put_object(Bucket="vers", Key="k", Body=body)
    versions = s3.list_object_versions(Bucket="vers")["Versions"]
    assert [(v["Key"], v["VersionId"]) for v in versions] == [("k", "null")]
    assert (
        code_of(
            lambda: s3.put_bucket_versioning(
                Bucket="nope", VersioningConfiguration={"Status": "Suspended"}
            )
        )
        == "NoSuchBucket"
    )
