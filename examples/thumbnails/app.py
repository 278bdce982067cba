"""thumbnails: make a small JPEG of every image uploaded to the `photos` bucket.

Upload with any S3 client (boto3, the aws cli, rclone) to
http://127.0.0.1:8000/_s3, bucket `photos`, key `images/NAME`; the thumbnail
appears at `thumbnails/NAME.jpg`. The trigger is a durable job: it runs once
per upload, is retried if it fails, and survives a crash between the upload
and the thumbnail.
"""

import asyncio
from io import BytesIO
from pathlib import PurePosixPath

from PIL import Image, UnidentifiedImageError

from shoestring import App
from shoestring.storage import ObjectEvent

SIZE = (256, 256)

app = App("thumbnails")
photos = app.storage.bucket("photos")


def shrink(original: bytes) -> bytes:
    """A JPEG no larger than SIZE, keeping the aspect ratio."""
    with Image.open(BytesIO(original)) as image:
        image.thumbnail(SIZE)
        out = BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue()


@photos.on_put("images/*", retries=3)
async def make_thumbnail(event: ObjectEvent) -> None:
    original = await photos.read(event.key)
    try:
        # Decoding and resizing take milliseconds of CPU: off the event loop.
        thumbnail = await asyncio.to_thread(shrink, original)
    except UnidentifiedImageError:
        return  # not an image: nothing to make, and retrying will not change that
    name = PurePosixPath(event.key.removeprefix("images/")).with_suffix(".jpg")
    await photos.put(f"thumbnails/{name}", thumbnail, content_type="image/jpeg")


@app.route("/")
async def home() -> dict[str, str]:
    return {"upload": "PUT images/NAME to bucket 'photos' at /_s3", "thumbnails": "thumbnails/"}
