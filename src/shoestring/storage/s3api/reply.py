"""What an S3 handler answers, and how it goes out over ASGI."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from starlette.types import Send

from shoestring.storage.objects import Checksum, ObjectBody, ObjectInfo
from shoestring.storage.s3api.xml import error_document

Headers = list[tuple[bytes, bytes]]
XML = (b"content-type", b"application/xml")


@dataclass(slots=True)
class Reply:
    status: int = 200
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    stream: ObjectBody | None = None
    length: int | None = None  # Content-Length of a streamed or HEAD body
    head: bool = False  # HEAD: headers as for GET, no body

    def header(self, name: str, value: str) -> Reply:
        self.headers.append((name.encode("latin-1"), value.encode("latin-1", "replace")))
        return self

    async def send(self, send: Send) -> None:
        length = self.length if self.length is not None else len(self.body)
        headers = [*self.headers, (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if self.stream is not None and self.stream.data is not None and not self.head:
            # Already in memory (a small object): one message, one write.
            await send({"type": "http.response.body", "body": self.stream.data})
            return
        if self.stream is not None and not self.head:
            try:
                async for chunk in self.stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                await self.stream.close()
            await send({"type": "http.response.body", "body": b""})
            return
        if self.stream is not None:
            await self.stream.close()
        await send({"type": "http.response.body", "body": b"" if self.head else self.body})


def xml_reply(document: bytes, status: int = 200) -> Reply:
    return Reply(status, [XML], document)


def error_reply(code: str, message: str, status: int, resource: str, request_id: str) -> Reply:
    return Reply(status, [XML], error_document(code, message, resource, request_id))


def http_date(info: ObjectInfo) -> str:
    return _http_date(info.last_modified)


@functools.lru_cache(maxsize=4096)
def _http_date(when: datetime) -> str:
    # Formatting costs more than the rest of a small GET's headers; objects
    # read often share few dates.
    return format_datetime(when, usegmt=True)


def object_headers(info: ObjectInfo) -> Reply:
    """A Reply carrying the object's headers (no body yet)."""
    reply = Reply()
    meta = info.meta
    reply.header("content-type", meta.content_type)
    reply.header("etag", info.etag)
    reply.header("last-modified", http_date(info))
    reply.header("accept-ranges", "bytes")
    for name, value in (
        ("cache-control", meta.cache_control),
        ("content-disposition", meta.content_disposition),
        ("content-encoding", meta.content_encoding),
        ("content-language", meta.content_language),
        ("expires", meta.expires),
    ):
        if value:
            reply.header(name, value)
    for name, value in meta.metadata.items():
        reply.header(f"x-amz-meta-{name}", value)
    return reply


def checksum_headers(reply: Reply, checksum: Checksum | None, *, with_type: bool = True) -> Reply:
    """`reply` with `x-amz-checksum-<algorithm>` (and `x-amz-checksum-type`) of `checksum`.

    A part's checksum goes without its type: S3 names a type only for objects.
    """
    if checksum is not None:
        reply.header(f"x-amz-checksum-{checksum.algorithm}", checksum.value)
        if with_type:
            reply.header("x-amz-checksum-type", checksum.type)
    return reply
