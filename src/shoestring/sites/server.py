"""SiteApp: the ASGI app that serves one site's files, with CDN-style caching.

GET and HEAD only. Strong ETags (content hashes) and Last-Modified, 304 on
If-None-Match / If-Modified-Since, single byte ranges (several ranges get
the whole file), precompressed `.br` / `.gz` siblings chosen by
Accept-Encoding and its q-values (Brotli when the client likes both as
well), each with its own ETag, immutable caching for fingerprinted assets
and `no-cache` for everything else, a 308 from a directory to its slash.
With `spa = true`, a path that looks like a route (no extension, the client
accepts HTML) gets `index.html`; a missing asset is still a real 404.

The files come from a `SiteSource` (a directory, or a release in a storage
bucket): this module is the only place HTTP semantics live, for both.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from starlette.types import Receive, Scope, Send

from shoestring.sites.files import (
    FileGone,
    SiteFiles,
    SiteSource,
    SiteUnavailable,
    StaticFile,
    Variant,
    safe_parts,
)

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §12.4.2: a weight is 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# RFC 9110 §8.4.1.3: `x-gzip` is to be taken as `gzip`.
_ALIASES = {"x-gzip": "gzip"}


def _site_path(scope: Scope) -> str:
    """The request's path within the site: a site mounted at `/docs` sees `/docs/a` as `/a`.

    Percent-decoded exactly once: from `raw_path` as it came over the wire
    where the server gives it (not every client decodes `path` only once),
    else the already decoded `path`. Twice would make `/%2541.txt` name
    `A.txt`, and a file `a%20b.txt` unreachable.
    """
    path: str = scope.get("path", "/")
    mounted_at: str = scope.get("root_path", "")
    raw: bytes | None = scope.get("raw_path")
    if raw:
        decoded = unquote(raw.decode("latin-1"))
        if decoded.startswith(mounted_at):  # else raw_path lacks a prefix the server added
            path = decoded
    return path[len(mounted_at) :] if mounted_at and path.startswith(mounted_at) else path


class SiteApp:
    """One site's files over HTTP, from whichever `SiteSource` holds them."""

    def __init__(
        self,
        source: SiteSource,
        *,
        spa: bool = False,
        not_found: str | None = "404.html",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self.spa = spa
        self.not_found = not_found
        self.extra_headers: Headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        try:
            # One release per request: the page, its SPA fallback and the 404 page agree.
            files = await self.source.current()
            found, status = await self._resolve(files, scope)
            if status == 308:
                await redirect_to_slash(scope, receive, send)
                return
            if found is None:
                await _plain(send, 404, b"Not Found", [])
                return
            assert files is not None
            request_headers = {k: v for k, v in scope["headers"]}
            await self._send_file(files, found, status, method == "HEAD", request_headers, send)
        except SiteUnavailable:
            await _plain(send, 503, b"Service Unavailable", [(b"retry-after", b"1")])

    async def _resolve(
        self, files: SiteFiles | None, scope: Scope
    ) -> tuple[StaticFile | None, int]:
        if files is None:
            return None, 404  # nothing published yet
        path = _site_path(scope)
        parts = safe_parts(path)
        found = await files.lookup(parts) if parts is not None else None
        if found is not None:
            return found, 200
        index = await files.lookup([*parts, "index.html"]) if parts is not None else None
        if index is not None:
            # A directory: at `/sub/`, so its relative links resolve inside it
            # (nginx answers 301 here, Caddy 308; the Caddyfile leaves it to us).
            return (index, 200) if path.endswith("/") or not parts else (None, 308)
        if parts is not None and self.spa and _looks_like_route(parts, scope["headers"]):
            index = await files.lookup(["index.html"])
            if index is not None:
                return index, 200
        page = await files.lookup([self.not_found]) if self.not_found else None
        return page, 404

    async def _send_file(
        self,
        files: SiteFiles,
        file: StaticFile,
        status: int,
        head: bool,
        request: dict[bytes, bytes],
        send: Send,
    ) -> None:
        variant = file.plain
        range_header = request.get(b"range")
        if range_header is None:  # a range is always of the file itself
            variant = _pick_encoding(file, request.get(b"accept-encoding", b"")) or file.plain
        headers: Headers = [*file.headers, (b"etag", variant.etag.encode()), *self.extra_headers]
        if status == 200 and _not_modified(file, variant, request):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if variant.encoding is not None:
            headers.append((b"content-encoding", variant.encoding.encode()))
        size = variant.size
        start, end = 0, size - 1
        if range_header is not None and status == 200 and _if_range_holds(file, variant, request):
            try:
                parsed = _parse_range(range_header, size)
            except _Unsatisfiable:
                # About the range, not the file: no validators, one Content-Type.
                unsatisfied = [(b"content-range", f"bytes */{size}".encode())]
                await _plain(send, 416, b"Range Not Satisfiable", unsatisfied)
                return
            if parsed is not None and parsed != (0, size - 1):
                start, end = parsed
                status = 206
                headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
        length = end - start + 1 if size else 0
        headers.append((b"content-length", str(length).encode()))
        if head or length == 0 or variant.body is not None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            body = b"" if head or variant.body is None else variant.body[start : end + 1]
            await send({"type": "http.response.body", "body": body})
            return
        try:
            # Opened before the status goes out, so a vanished file is still a clean 404.
            chunks = await files.open(variant, start, length)
        except FileGone:
            await _plain(send, 404, b"Not Found", [])
            return
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            sent = 0
            async for chunk in chunks:
                sent += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": sent < length}
                )
            if sent < length:
                await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()


async def redirect_to_slash(scope: Scope, receive: Receive, send: Send) -> None:
    """308 to the request's path with a slash added, query string kept."""
    # One leading slash: `//evil.example/` would be another host's URL.
    location = "/" + quote(scope["path"], safe="/!$&'()*+,;=:@~").lstrip("/") + "/"
    query: bytes = scope.get("query_string", b"")
    if query:
        location += "?" + query.decode("latin-1")
    headers = [(b"location", location.encode("latin-1"))]
    await _plain(send, 308, b"Permanent Redirect", headers)


def _looks_like_route(parts: list[str], headers: list[tuple[bytes, bytes]]) -> bool:
    last = parts[-1] if parts else ""
    accept = b",".join(value for key, value in headers if key == b"accept")
    accepts_html = b"text/html" in accept or b"*/*" in accept
    return not PurePosixPath(last).suffix and accepts_html


def _not_modified(file: StaticFile, variant: Variant, request: dict[bytes, bytes]) -> bool:
    if_none_match = request.get(b"if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
        return b"*" in tags or variant.etag.encode() in tags
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


def _if_range_holds(file: StaticFile, variant: Variant, request: dict[bytes, bytes]) -> bool:
    """RFC 9110 §13.1.5: whether If-Range (if any) names what would be sent now.

    An entity tag must be this form's, compared strongly. A date must be
    the Last-Modified exactly, and that must be a strong validator
    (§8.8.2.2): the file has not changed since, and its second is over, so
    it cannot change twice within it.
    """
    condition = request.get(b"if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith((b'"', b"W/")):
        return condition == variant.etag.encode()
    try:
        date = parsedate_to_datetime(condition.decode("latin-1")).timestamp()
    except (TypeError, ValueError):
        return False
    second = file.mtime_ns // 1_000_000_000
    return date == second and time.time() >= second + 1


class _Unsatisfiable(Exception):
    """The Range header asks for bytes the file does not have, or is malformed: 416."""


def _parse_range(header: bytes, size: int) -> tuple[int, int] | None:
    """The one `bytes=a-b` range within `size`; None to ignore the header (send it all).

    RFC 9110 §14.2: a server ignores a range unit it does not know, and may
    ignore a request for several ranges (answering 200 with the whole file
    rather than a multipart/byteranges body). A malformed or unsatisfiable
    byte range raises _Unsatisfiable, as Caddy and nginx answer it.
    """
    unit, _, spec = header.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    if size == 0:
        raise _Unsatisfiable
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise _Unsatisfiable
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise _Unsatisfiable from None
    if start < 0 or start >= size or end < start:
        raise _Unsatisfiable
    return start, min(end, size - 1)


def _pick_encoding(file: StaticFile, accept: bytes) -> Variant | None:
    """The sibling the client weighs highest (ties: ours, Brotli first); None for the file.

    RFC 9110 §12.5.3: `q=0` refuses a coding, `*` stands for those not named,
    and a client naming `identity` above every sibling gets the file itself.
    """
    if not file.encodings or not accept:
        return None
    weights = _weights(accept)
    chosen, best = None, 0.0
    for variant in file.encodings:
        weight = weights.get(variant.encoding or "", weights.get("*", 0.0))
        if weight > best:
            chosen, best = variant, weight
    return None if weights.get("identity", 0.0) > best else chosen


def _weights(accept: bytes) -> dict[str, float]:
    """`gzip;q=0.5, br` -> {"gzip": 0.5, "br": 1.0}; items with a malformed weight are left out."""
    weights: dict[str, float] = {}
    for item in accept.decode("latin-1").split(","):
        coding, *parameters = item.split(";")
        coding = coding.strip().lower()
        weight: float | None = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else None
        if coding and weight is not None:
            coding = _ALIASES.get(coding, coding)
            weights[coding] = min(weight, weights.get(coding, weight))  # named twice: the lower
    return weights


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
