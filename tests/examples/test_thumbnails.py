"""examples/thumbnails: an image uploaded through the S3 API gets its thumbnail."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import Server
from tests.examples.conftest import copy_example
from tests.storage.conftest import s3_client
from tests.storage.test_e2e import new_key

pytestmark = pytest.mark.e2e


def _png(width: int, height: int) -> bytes:
    out = BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(out, "PNG")
    return out.getvalue()


def test_upload_through_boto3_makes_a_thumbnail(tmp_path: Path) -> None:
    project = copy_example("thumbnails", tmp_path)
    key = new_key(project)
    server = Server(project)
    try:
        server.wait_ready("/_ready")
        s3 = s3_client(server.base_url + "/_s3", key["access_key_id"], key["secret_access_key"])
        s3.put_object(Bucket="photos", Key="images/cat.png", Body=_png(1200, 800))
        s3.put_object(Bucket="photos", Key="images/notes.txt", Body=b"not an image")
        s3.put_object(Bucket="photos", Key="other/dog.png", Body=_png(50, 50))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = s3.list_objects_v2(Bucket="photos", Prefix="thumbnails/")
            if listed.get("KeyCount"):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the other uploads' jobs have run by now too
        listed = s3.list_objects_v2(Bucket="photos", Prefix="thumbnails/")
        assert [o["Key"] for o in listed.get("Contents", [])] == ["thumbnails/cat.jpg"]
        thumbnail = s3.get_object(Bucket="photos", Key="thumbnails/cat.jpg")
        assert thumbnail["ContentType"] == "image/jpeg"
        with Image.open(BytesIO(thumbnail["Body"].read())) as image:
            assert image.format == "JPEG" and image.size == (256, 171)
    finally:
        assert server.terminate() == 0, server.log
