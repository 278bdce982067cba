"""Multipart uploads meeting other requests: DeleteBucket, racing completions and aborts,
and the paging arguments of ListParts and ListMultipartUploads."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import botocore.exceptions
import pytest

from tests.storage.conftest import ServerThread

MIB = 1024 * 1024


def outcome(call: Any, **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{exc.response['Error']['Code']} {status}"
    return "ok"


def part_files(server: ServerThread) -> set[str]:
    index = server.app.storage.backend.index  # type: ignore[attr-defined]
    return {row[0] for row in index.read_all("SELECT file FROM parts")}


def test_delete_bucket_aborts_its_uploads_in_progress(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="going")
    upload = s3.create_multipart_upload(Bucket="going", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="going", Key="big", UploadId=upload, PartNumber=1, Body=b"x")
    files = part_files(server)
    assert len(files) == 1
    s3.delete_bucket(Bucket="going")  # as S3: uploads in progress do not keep a bucket
    assert "going" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert part_files(server) == set()
    data = server.app.storage.backend.files  # type: ignore[attr-defined]
    assert not any(data.path(file).exists() for file in files)
    s3.create_bucket(Bucket="going")  # a namesake starts with nothing of the old one's
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="going")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    assert outcome(
        s3.complete_multipart_upload, Bucket="going", Key="big", UploadId=upload,
        MultipartUpload=parts,
    ) == "NoSuchUpload 404"  # fmt: skip
    s3.put_object(Bucket="going", Key="kept", Body=b"k")
    assert outcome(s3.delete_bucket, Bucket="going") == "BucketNotEmpty 409"


def test_completions_racing_aborts_and_each_other_never_fail_or_tear(
    server: ServerThread, s3: Any
) -> None:
    s3.create_bucket(Bucket="race")
    data = b"r" * (5 * MIB)
    clients = [server.client() for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(6):
            upload = s3.create_multipart_upload(Bucket="race", Key="k")["UploadId"]
            parts = {
                "Parts": [
                    {"PartNumber": n, "ETag": s3.upload_part(
                        Bucket="race", Key="k", UploadId=upload, PartNumber=n, Body=data
                    )["ETag"]}
                    for n in (1, 2)
                ]
            }  # fmt: skip
            where = {"Bucket": "race", "Key": "k", "UploadId": upload}
            calls = [
                pool.submit(outcome, clients[0].complete_multipart_upload, MultipartUpload=parts, **where),
                pool.submit(outcome, clients[1].complete_multipart_upload, MultipartUpload=parts, **where),
                pool.submit(outcome, clients[2].abort_multipart_upload, **where),
                pool.submit(
                    outcome, clients[3].upload_part, PartNumber=2, Body=b"s" * (5 * MIB), **where
                ),
            ]  # fmt: skip
            results = [call.result() for call in calls]
            assert all(
                r == "ok" or r.endswith(" 404") or r.startswith("InvalidPart") for r in results
            ), results
            # Exactly one of them ends the upload, and an object exists if it was a completion.
            assert results[:3].count("ok") == 1, results
            try:
                body = s3.get_object(Bucket="race", Key="k")["Body"].read()
            except botocore.exceptions.ClientError:
                assert results[2] == "ok", results
            else:
                assert "ok" in results[:2], results
                assert body == data * 2, results  # the parts as listed, never a mixture
                s3.delete_object(Bucket="race", Key="k")
    assert part_files(server) == set()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"MaxParts": 0}, []),
        ({"MaxParts": 1}, [1]),
        ({"PartNumberMarker": 1}, [2]),
    ],
)
def test_list_parts_pages(s3: Any, arguments: dict[str, int], expected: list[int]) -> None:
    s3.create_bucket(Bucket="parts")
    upload = s3.create_multipart_upload(Bucket="parts", Key="k")["UploadId"]
    for n in (1, 2):
        s3.upload_part(Bucket="parts", Key="k", UploadId=upload, PartNumber=n, Body=b"p")
    listed = s3.list_parts(Bucket="parts", Key="k", UploadId=upload, **arguments)
    assert [p["PartNumber"] for p in listed.get("Parts", [])] == expected
    assert listed["IsTruncated"] == (arguments == {"MaxParts": 1})


def test_paging_arguments_that_are_not_counts_are_invalid(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="args")
    upload = s3.create_multipart_upload(Bucket="args", Key="k")["UploadId"]
    assert s3.list_multipart_uploads(Bucket="args", MaxUploads=0)["IsTruncated"] is False
    url = server.url + "/_s3/args"
    cases = [
        f"{url}/k?uploadId={upload}&max-parts=many",
        f"{url}/k?uploadId={upload}&part-number-marker=x",
        f"{url}/k?uploadId={upload}&max-parts=-1",
        f"{url}?max-keys=ten",
        f"{url}?list-type=2&max-keys=%2B5",
        f"{url}?uploads&max-uploads=1_0",
    ]
    from tests.storage.s3api.signing import signed_request

    key = server.new_key()
    for case in cases:
        answer = signed_request("GET", case, key)
        assert answer.status_code == 400 and b"InvalidArgument" in answer.content, case
