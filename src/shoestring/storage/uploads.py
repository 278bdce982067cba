"""Paging multipart uploads in progress as S3's ListMultipartUploads does.

The fs backend finds the uploads after the markers in order; this rolls
them up at the delimiter and cuts the page, so that following NextKeyMarker
and NextUploadIdMarker lists every upload and every common prefix once.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoestring.storage.objects import Upload, UploadPage


def page_of_uploads(
    ordered: Iterable[Upload], *, prefix: str, delimiter: str, key_marker: str, max_uploads: int
) -> UploadPage:
    """The first `max_uploads` uploads and common prefixes of `ordered`.

    `ordered` holds the uploads under `prefix` that come after the markers,
    in key order and then upload id order; it is read only as far as needed.
    """
    uploads: list[Upload] = []
    prefixes: list[str] = []
    next_key: str | None = None
    next_id: str | None = None
    if max_uploads == 0:
        return UploadPage([], [], False)  # as a listing of max-keys=0: nothing asked
    for upload in ordered:
        common = _common_prefix(upload.key, prefix, delimiter)
        # A prefix already on this page, or at or before the marker (so on an
        # earlier page, as its NextKeyMarker), is not listed again. Comparing
        # str compares code points, which is UTF-8 byte order.
        if common is not None and ((prefixes and prefixes[-1] == common) or common <= key_marker):
            continue
        if len(uploads) + len(prefixes) >= max_uploads:
            return UploadPage(uploads, prefixes, True, next_key, next_id)
        if common is None:
            uploads.append(upload)
            next_key, next_id = upload.key, upload.upload_id
        else:
            prefixes.append(common)
            next_key, next_id = common, None
    return UploadPage(uploads, prefixes, False)


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    cut = key.find(delimiter, len(prefix))
    return None if cut < 0 else key[: cut + len(delimiter)]
