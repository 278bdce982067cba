"""The fs backend's multipart completions: the parts a CompleteMultipartUpload lists,
checked against those stored (fs.py joins them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shoestring.storage.checksums import check_listed_part
from shoestring.storage.errors import EntityTooSmall, InvalidPart, InvalidPartOrder
from shoestring.storage.objects import MULTIPART_MIN_PART, Checksum, CompletedPart


class PartsChanged(Exception):
    """An upload's parts changed while a completion joined them: it starts over."""


@dataclass(frozen=True, slots=True)
class StoredPart:
    file: str
    size: int
    etag: str
    checksum: Checksum | None


def check_parts(
    parts: Sequence[CompletedPart], stored: dict[int, StoredPart], algorithm: str | None
) -> None:
    if not parts:
        raise InvalidPart("CompleteMultipartUpload must list at least one part")
    numbers = [part.number for part in parts]
    if numbers != sorted(set(numbers)):
        raise InvalidPartOrder("the list of parts was not in ascending order")
    for index, part in enumerate(parts):
        found = stored.get(part.number)
        if found is None or found.etag.strip('"') != part.etag.strip('"'):
            raise InvalidPart(f"part {part.number} was not uploaded or its ETag does not match")
        check_listed_part(part, found.checksum, algorithm)
        if index < len(parts) - 1 and found.size < MULTIPART_MIN_PART:
            raise EntityTooSmall(f"part {part.number} is smaller than the 5 MiB minimum")
