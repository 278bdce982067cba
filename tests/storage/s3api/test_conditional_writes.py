"""Conditional writes (If-None-Match: *, If-Match) of PutObject, CopyObject and
CompleteMultipartUpload: a failed condition is 412 and leaves the object as it was."""

from __future__ import annotations

import threading
from typing import Any

import botocore.exceptions
import pytest

from tests.storage.conftest import ServerThread
from tests.storage.s3api.signing import signed_request

MIB = 1024 * 1024


def refused(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call(**kwargs)
    response = excinfo.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def test_put_if_none_match_and_if_match_on_both_backends(backend_server: ServerThread) -> None:
    s3 = backend_server.client()
    s3.create_bucket(Bucket="cond")
    first = s3.put_object(Bucket="cond", Key="k", Body=b"first", IfNoneMatch="*")["ETag"]
    assert refused(s3.put_object, Bucket="cond", Key="k", Body=b"second", IfNoneMatch="*") == (
        "PreconditionFailed",
        412,
    )
    assert refused(
        s3.put_object, Bucket="cond", Key="k", Body=b"third", IfMatch='"' + "0" * 32 + '"'
    ) == (
        "PreconditionFailed",
        412,
    )
    assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == b"first"
    s3.put_object(Bucket="cond", Key="k", Body=b"fourth", IfMatch=first)
    assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == b"fourth"
    assert refused(s3.put_object, Bucket="cond", Key="none", Body=b"x", IfMatch=first)[1] == 404
    assert refused(s3.head_object, Bucket="cond", Key="none")[1] == 404


def test_if_none_match_takes_only_a_star(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="star")
    url = server.url + "/_s3/star/k"
    etag_condition = signed_request(
        "PUT", url, server.new_key(), b"x", headers={"if-none-match": '"abc"'}
    )
    assert etag_condition.status_code == 501 and b"NotImplemented" in etag_condition.content
    assert refused(s3.head_object, Bucket="star", Key="k")[1] == 404


def test_racing_if_none_match_puts_have_exactly_one_winner(server: ServerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="race")
    clients = [server.client() for _ in range(6)]
    results: list[str] = []
    start = threading.Barrier(len(clients))

    def put(client: Any, n: int) -> None:
        start.wait()
        try:
            client.put_object(Bucket="race", Key="k", Body=b"%d" % n * MIB, IfNoneMatch="*")
            results.append(f"won {n}")
        except botocore.exceptions.ClientError as exc:
            results.append(str(exc.response["Error"]["Code"]))

    threads = [threading.Thread(target=put, args=(c, n)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("PreconditionFailed") == len(clients) - 1
    n = int(winners[0].split()[1])
    assert s3.get_object(Bucket="race", Key="k")["Body"].read() == b"%d" % n * MIB


def test_complete_and_copy_check_the_destination(s3: Any) -> None:
    s3.create_bucket(Bucket="dest")
    s3.put_object(Bucket="dest", Key="there", Body=b"kept")
    s3.put_object(Bucket="dest", Key="source", Body=b"copied")
    upload = s3.create_multipart_upload(Bucket="dest", Key="there")["UploadId"]
    part = s3.upload_part(Bucket="dest", Key="there", UploadId=upload, PartNumber=1, Body=b"mp")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    complete = {"Bucket": "dest", "Key": "there", "UploadId": upload, "MultipartUpload": parts}
    assert refused(s3.complete_multipart_upload, IfNoneMatch="*", **complete) == (
        "PreconditionFailed",
        412,
    )
    copy = {"Bucket": "dest", "Key": "there", "CopySource": "dest/source"}
    assert refused(s3.copy_object, IfNoneMatch="*", **copy) == ("PreconditionFailed", 412)
    assert refused(s3.copy_object, IfMatch='"nope"', **copy) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket="dest", Key="there")["Body"].read() == b"kept"
    # The upload stays, to be completed once the condition holds.
    etag = s3.head_object(Bucket="dest", Key="there")["ETag"]
    s3.complete_multipart_upload(IfMatch=etag, **complete)
    assert s3.get_object(Bucket="dest", Key="there")["Body"].read() == b"mp"
    s3.copy_object(IfNoneMatch="*", Bucket="dest", Key="new", CopySource="dest/source")
    assert s3.get_object(Bucket="dest", Key="new")["Body"].read() == b"copied"
