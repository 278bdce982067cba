"""A response's body as it went over the wire, and undone by hand (not by the client)."""

from __future__ import annotations

import gzip
from typing import Any

import brotli


def fetch_raw(client: Any, url: str, accept_encoding: str, **headers: str) -> tuple[Any, bytes]:
    """GET `url` with `client` (httpx, or a TestClient); the response and its undecoded body."""
    wanted = {"accept-encoding": accept_encoding, **headers}
    with client.stream("GET", url, headers=wanted) as response:
        return response, b"".join(response.iter_raw())


def decode(encoding: str | None, body: bytes) -> bytes:
    """`body` as the client would read it, given its Content-Encoding."""
    if encoding == "br":
        return bytes(brotli.decompress(body))
    if encoding == "gzip":
        return gzip.decompress(body)
    assert encoding is None, encoding
    return body


def etags_by_encoding(client: Any, url: str) -> dict[str, str]:
    """The ETag of each form of `url`, checked: distinct, strong, and each validates only itself."""
    tags = {
        accept: client.get(url, headers={"accept-encoding": accept}).headers["etag"]
        for accept in ("identity", "gzip", "br")
    }
    assert len(set(tags.values())) == 3
    assert not any(tag.startswith("W/") for tag in tags.values())
    for accept, tag in tags.items():
        again = client.get(url, headers={"accept-encoding": accept, "if-none-match": tag})
        assert again.status_code == 304 and again.headers["etag"] == tag
        assert again.headers["vary"] == "Accept-Encoding"
    # The Brotli form's tag does not validate the gzip form a client now asks for.
    other = client.get(url, headers={"accept-encoding": "gzip", "if-none-match": tags["br"]})
    assert other.status_code == 200 and other.headers["content-encoding"] == "gzip"
    return tags
