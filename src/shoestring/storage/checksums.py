"""The checksums S3 keeps with objects and parts, and its rules for multipart uploads.

An upload's `x-amz-checksum-*` value, once verified (digests.py), is kept
with the object and returned by GET and HEAD in checksum mode. A multipart
upload names its algorithm when it begins, and so how the object's checksum
is made of its parts' (S3 User Guide, "Checking object integrity for data
uploads", checksum types):

    algorithm                      FULL_OBJECT      COMPOSITE
    CRC64NVME                      yes (default)    no
    CRC32, CRC32C                  yes              yes (default)
    SHA1, SHA256 and the others    no               yes (default)

A FULL_OBJECT checksum is the checksum of the object's bytes. A COMPOSITE
one is the algorithm's digest of the parts' binary checksums concatenated in
part order, base64, then `-N` for N parts: not a checksum of the bytes, which
is why clients (botocore) skip validating a value with a dash.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from shoestring.storage.digests import CHECKSUMS, Expected, to_base64
from shoestring.storage.errors import BadDigest, InvalidChecksum, InvalidPart
from shoestring.storage.objects import Checksum, ChecksumType, CompletedPart

FULL_OBJECT_ALGORITHMS = frozenset({"crc32", "crc32c", "crc64nvme"})
# What S3 computes for an object uploaded without a checksum (since 2025), and so do we.
DEFAULT_CHECKSUM = "crc64nvme"
COMPOSITE_ALGORITHMS = frozenset(CHECKSUMS) - {"crc64nvme"}
READ_CHUNK = 1024 * 1024


def put_algorithm(expected: Expected | None) -> str | None:
    """The checksum to compute for a PutObject: the client's, or else S3's default."""
    return None if expected is not None and expected.checksums else DEFAULT_CHECKSUM


def member_name(algorithm: str) -> str:
    """The name S3's XML and boto3 give a checksum of `algorithm`: `ChecksumCRC32`."""
    return "Checksum" + algorithm.upper()


def checksum_type(text: str | None) -> ChecksumType | None:
    """`text` as a checksum type, or None if it is none (empty, or not S3's)."""
    if text == "COMPOSITE":
        return "COMPOSITE"
    return "FULL_OBJECT" if text == "FULL_OBJECT" else None


def checksum_algorithm(name: str) -> str:
    """`name` (any case: CRC32, crc32) as CHECKSUMS names it; InvalidChecksum if S3 has no such."""
    algorithm = name.strip().lower()
    if algorithm not in CHECKSUMS:
        known = ", ".join(a.upper() for a in CHECKSUMS)
        raise InvalidChecksum(f"Checksum algorithm {name!r} is not supported: use one of {known}")
    return algorithm


def upload_checksum_type(algorithm: str | None, requested: str | None) -> ChecksumType | None:
    """The checksum type of a multipart upload of `algorithm` (None: the upload has no checksum).

    `requested` is the client's x-amz-checksum-type, if any; InvalidChecksum
    if the algorithm cannot make a checksum of that type.
    """
    if algorithm is None:
        if requested:
            raise InvalidChecksum("x-amz-checksum-type needs an x-amz-checksum-algorithm")
        return None
    kind = (requested or ("FULL_OBJECT" if algorithm == "crc64nvme" else "COMPOSITE")).upper()
    if kind == "FULL_OBJECT" and algorithm in FULL_OBJECT_ALGORITHMS:
        return "FULL_OBJECT"
    if kind == "COMPOSITE" and algorithm in COMPOSITE_ALGORITHMS:
        return "COMPOSITE"
    if kind not in ("FULL_OBJECT", "COMPOSITE"):
        raise InvalidChecksum("x-amz-checksum-type must be FULL_OBJECT or COMPOSITE")
    raise InvalidChecksum(
        f"The {algorithm.upper()} checksum algorithm does not support the {kind} checksum type"
    )


def composite(algorithm: str, parts: Sequence[Checksum]) -> Checksum:
    """The COMPOSITE checksum of an object made of parts with these checksums, in order."""
    hasher = CHECKSUMS[algorithm][0]()
    for part in parts:
        hasher.update(base64.b64decode(part.value))
    return Checksum(algorithm, f"{to_base64(hasher.digest())}-{len(parts)}", "COMPOSITE")


def file_checksum(path: Path, algorithm: str) -> Checksum:
    """The FULL_OBJECT checksum of a file's bytes (it reads the file: call it on a thread)."""
    hasher = CHECKSUMS[algorithm][0]()
    with path.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            hasher.update(chunk)
    return Checksum(algorithm, to_base64(hasher.digest()))


def check_listed_part(part: CompletedPart, stored: Checksum | None, algorithm: str | None) -> None:
    """Refuse a CompleteMultipartUpload entry whose checksum is not the part's.

    InvalidPart if the client lists a checksum the part was not stored with;
    InvalidChecksum if the upload named an `algorithm` and the entry has none.
    """
    listed = part.checksum
    if listed is None:
        if algorithm is not None:
            raise InvalidChecksum(
                f"The upload was created using a {algorithm} checksum. The complete request "
                f"must include the checksum for each part. It was missing for part {part.number} "
                "in the request."
            )
        return
    if stored is None or (listed.algorithm, listed.value) != (stored.algorithm, stored.value):
        raise InvalidPart(
            f"part {part.number}'s {listed.algorithm.upper()} checksum does not match "
            "the checksum it was uploaded with"
        )


def check_object_checksum(asserted: Checksum | None, made: Checksum | None) -> None:
    """BadDigest unless the object checksum a client asserts at completion is the one made."""
    if asserted is None:
        return
    if made is None or asserted.algorithm != made.algorithm:
        raise InvalidChecksum(
            f"Checksum Type mismatch occurred, expected checksum Type: "
            f"{made.algorithm if made else 'null'}, actual checksum Type: {asserted.algorithm}"
        )
    if asserted.type != made.type:
        raise BadDigest(
            f"The upload was created using the {made.type} checksum mode. The complete request "
            f"must use the same checksum mode, not {asserted.type}."
        )
    if asserted.value.partition("-")[0] != made.value.partition("-")[0]:
        raise BadDigest(
            f"The {made.algorithm.upper()} you specified did not match the calculated checksum."
        )
