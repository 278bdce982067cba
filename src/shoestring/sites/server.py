"""SiteApp: the ASGI app that serves one site's files, with CDN-style caching.

GET and HEAD only. Strong ETags (content hashes) and Last-Modified, 304 on
If-None-Match / If-Modified-Since, single byte ranges, precompressed `.br` /
`.gz` siblings chosen by Accept-Encoding, immutable caching for fingerprinted
assets and `no-cache` for everything else. With `spa = true`, a path that
looks like a route (no extension, the client accepts HTML) gets `index.html`;
a missing asset is still a real 404.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import anyio
from starlette.types import Receive, Scope, Send

from shoestring.sites.files import FileIndex, StaticFile, safe_parts

STREAM_CHUNK = 1024 * 1024

Headers = list[tuple[bytes, bytes]]


class SiteApp:
    def __init__(
        self,
        root: Callable[[], Path],
        *,
        spa: bool = False,
        not_found: str | None = "404.html",
        headers: dict[str, str] | None = None,
    ) -> None:
        # `root` is called per request: publishing switches it atomically.
        self._root = root
        self._indexes: dict[Path, FileIndex] = {}
        self.spa = spa
        self.not_found = not_found
        self.extra_headers: Headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]

    def index(self) -> FileIndex:
        root = self._root()
        index = self._indexes.get(root)
        if index is None:
            # A new release: start a fresh index; old ones go with their releases.
            self._indexes = {root: FileIndex(root)}
            index = self._indexes[root]
        return index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        request_headers = {k: v for k, v in scope["headers"]}
        index = self.index()
        url_path = unquote(scope.get("path", "/"))
        parts = safe_parts(url_path)
        found = index.lookup(parts) if parts is not None else None
        status = 200
        if (
            found is None
            and parts is not None
            and self.spa
            and _looks_like_route(parts, request_headers)
        ):
            found = index.lookup(["index.html"])
        if found is None:
            page = index.lookup([self.not_found]) if self.not_found else None
            if page is None:
                await _plain(send, 404, b"Not Found", [])
                return
            found, status = page, 404
        await self._send_file(found, status, method == "HEAD", request_headers, send)

    async def _send_file(
        self, file: StaticFile, status: int, head: bool, request: dict[bytes, bytes], send: Send
    ) -> None:
        headers: Headers = [*file.headers, *self.extra_headers]
        if status == 200 and _not_modified(file, request):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        path, size, body = file.path, file.size, file.body
        encoding = _pick_encoding(file, request.get(b"accept-encoding", b""))
        range_header = request.get(b"range")
        if encoding is not None and range_header is None:
            name, path, size = encoding
            body = None
            headers.append((b"content-encoding", name.encode()))
        start, end = 0, size - 1
        if range_header is not None and status == 200 and _if_range_holds(file, request):
            parsed = _parse_range(range_header, size)
            if parsed is None:
                headers.append((b"content-range", f"bytes */{size}".encode()))
                await _plain(send, 416, b"Range Not Satisfiable", headers)
                return
            if parsed != (0, size - 1):
                start, end = parsed
                status = 206
                headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
        length = end - start + 1 if size else 0
        headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if head or length == 0:
            await send({"type": "http.response.body", "body": b""})
        elif body is not None:
            await send({"type": "http.response.body", "body": body[start : end + 1]})
        else:
            await _stream(path, start, length, send)


def _looks_like_route(parts: list[str], headers: dict[bytes, bytes]) -> bool:
    last = parts[-1] if parts else ""
    accepts_html = b"text/html" in headers.get(b"accept", b"") or b"*/*" in headers.get(
        b"accept", b""
    )
    return not PurePosixPath(last).suffix and accepts_html


def _not_modified(file: StaticFile, request: dict[bytes, bytes]) -> bool:
    if_none_match = request.get(b"if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
        return b"*" in tags or file.etag.encode() in tags
    since = request.get(b"if-modified-since")
    if since is not None:
        try:
            return (
                parsedate_to_datetime(since.decode("latin-1")).timestamp()
                >= file.mtime_ns // 1_000_000_000
            )
        except (TypeError, ValueError):
            return False
    return False


def _if_range_holds(file: StaticFile, request: dict[bytes, bytes]) -> bool:
    condition = request.get(b"if-range")
    return condition is None or condition == file.etag.encode()


def _parse_range(header: bytes, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range within `size`; None if unsatisfiable or malformed."""
    unit, _, spec = header.decode("latin-1").partition("=")
    if unit.strip() != "bytes" or "," in spec or size == 0:
        return None  # several ranges in one response are not supported: 416
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return None
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)


def _pick_encoding(file: StaticFile, accept: bytes) -> tuple[str, Path, int] | None:
    offered = {part.split(b";")[0].strip().decode("latin-1") for part in accept.split(b",")}
    for encoding in file.encodings:
        if encoding[0] in offered:
            return encoding
    return None


async def _stream(path: Path, start: int, length: int, send: Send) -> None:
    # Large files only: a thread per chunk keeps the event loop free while
    # the disk reads, and memory stays at one chunk per response.
    file = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        await anyio.to_thread.run_sync(file.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(file.read, min(STREAM_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if remaining > 0:
            await send({"type": "http.response.body", "body": b""})
    finally:
        await anyio.to_thread.run_sync(file.close)


async def _plain(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *[h for h in headers if h[0] != b"content-length"],
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
