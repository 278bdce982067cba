"""Paging multipart uploads: following the markers lists everything once, in order."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shoestring.storage.objects import Upload
from shoestring.storage.uploads import page_of_uploads

WHEN = datetime(2025, 1, 1, tzinfo=UTC)
keys = st.text(alphabet="ab/é", min_size=1, max_size=5)  # S3 keys are never empty


def after_markers(uploads: list[Upload], prefix: str, key: str, upload_id: str) -> list[Upload]:
    """What the fs backend's query reads: under `prefix`, after the markers, in order."""
    return [
        u
        for u in sorted(uploads, key=lambda u: (u.key, u.upload_id))
        if u.key.startswith(prefix)
        and (
            not key or u.key > key or (u.key == key and bool(upload_id) and u.upload_id > upload_id)
        )
    ]


@given(
    st.lists(st.tuples(keys, st.integers(0, 3)), max_size=25, unique=True),
    st.sampled_from(["", "a"]),
    st.sampled_from(["", "/", "b"]),
    st.integers(1, 4),
)
def test_following_the_markers_lists_each_upload_and_prefix_once(
    entries: list[tuple[str, int]], prefix: str, delimiter: str, size: int
) -> None:
    uploads = [Upload(f"id{n}", key, WHEN) for key, n in entries]
    expected_uploads, expected_prefixes = [], []
    for u in after_markers(uploads, prefix, "", ""):
        cut = u.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            expected_uploads.append(u)
        elif u.key[: cut + len(delimiter)] not in expected_prefixes:
            expected_prefixes.append(u.key[: cut + len(delimiter)])

    listed, prefixes, key, upload_id = [], [], "", ""
    for _ in range(len(uploads) + 2):
        page = page_of_uploads(
            iter(after_markers(uploads, prefix, key, upload_id)),
            prefix=prefix, delimiter=delimiter, key_marker=key, max_uploads=size,
        )  # fmt: skip
        assert len(page.uploads) + len(page.prefixes) <= size
        listed += page.uploads
        prefixes += page.prefixes
        if not page.truncated:
            break
        assert page.next_key_marker is not None
        key, upload_id = page.next_key_marker, page.next_upload_id_marker or ""
    else:
        raise AssertionError("the pages never ended")
    assert listed == expected_uploads
    assert prefixes == expected_prefixes
