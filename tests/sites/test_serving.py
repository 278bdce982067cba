"""Static sites through the App: caching, ranges, encodings, SPA routing, traversal."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from shoestring import App, Settings
from shoestring.config import SiteSettings
from tests.sites.encodings import decode, etags_by_encoding, fetch_raw
from tests.sites.fingerprints import FINGERPRINTS

BIG = os.urandom(700 * 1024)
SCRIPT = b"console.log('app');" * 100


def build(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>home</title><div id=app></div>")
    (root / "404.html").write_text("<h1>not here</h1>")
    (root / "assets" / "app.3f2a9c1b.js").write_bytes(SCRIPT)
    (root / "assets" / "app.3f2a9c1b.js.gz").write_bytes(gzip.compress(SCRIPT))
    (root / "assets" / "app.3f2a9c1b.js.br").write_bytes(brotli.compress(SCRIPT))
    (root / "about").mkdir()
    (root / "about" / "index.html").write_text("<p>about</p>")
    (root / "video.bin").write_bytes(BIG)
    return root


@pytest.fixture
def site_root(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return build(tmp_path / "dist")


def client_for(tmp_path: Path, root: Path, **site: object) -> TestClient:
    app = App(
        "sites",
        settings=Settings(
            data_dir=tmp_path / "data", sites={"www": SiteSettings(root=str(root), **site)}
        ),  # type: ignore[arg-type]
    )

    @app.route("/api/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    return TestClient(app)


@pytest.fixture
def client(tmp_path: Path, site_root: Path) -> Iterator[TestClient]:
    with client_for(tmp_path, site_root, spa=True) as client:
        yield client


def test_files_have_types_validators_and_cache_policy(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "<title>home</title>" in home.text
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert home.headers["cache-control"] == "no-cache"
    assert home.headers["etag"].startswith('"') and "last-modified" in home.headers
    asset = client.get("/assets/app.3f2a9c1b.js", headers={"accept-encoding": "identity"})
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
    assert client.get("/about/").text == "<p>about</p>"


def test_app_routes_win_over_a_site_at_the_root(client: TestClient) -> None:
    assert client.get("/api/ping").json() == {"pong": True}
    assert client.get("/_health").json()["status"] == "ok"
    # another method on the route's path: the route's JSON 405, not the site's answer
    refused = client.put("/api/ping")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["code"] == "method_not_allowed"
    assert client.post("/about/").status_code == 405  # the site's own path: it answers reads


def test_conditional_requests_get_304(client: TestClient) -> None:
    first = client.get("/")
    again = client.get("/", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    since = client.get("/", headers={"if-modified-since": first.headers["last-modified"]})
    assert since.status_code == 304
    stale = client.get("/", headers={"if-none-match": '"other"'})
    assert stale.status_code == 200


def test_ranges(client: TestClient) -> None:
    part = client.get("/video.bin", headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == BIG[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(BIG)}"
    tail = client.get("/video.bin", headers={"range": "bytes=-10"})
    assert tail.content == BIG[-10:]
    beyond = client.get("/video.bin", headers={"range": f"bytes={len(BIG)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(BIG)}"
    # About the range, not the file: one Content-Type, no validators.
    assert beyond.headers.get_list("content-type") == ["text/plain; charset=utf-8"]
    assert "etag" not in beyond.headers and "last-modified" not in beyond.headers
    whole = client.get("/video.bin")
    assert whole.status_code == 200 and whole.content == BIG  # streamed, not cached in memory


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [("gzip, deflate, br, zstd", "br"), ("br;q=1, gzip;q=1", "br"), ("gzip", "gzip"),
     ("gzip;q=1, br;q=0", "gzip"), ("gzip, br;q=0.5", "gzip"), ("br;q=0.001, gzip;q=0", "br"),
     ("identity", None), ("deflate, zstd", None), ("*", "br"), ("br;q=0, *", "gzip"),
     ("*;q=0", None), ("x-gzip", "gzip"), ("BR", "br"), ("br;q=abc, gzip", "gzip"),
     ("br;q=1.5, gzip", "gzip"), ("identity;q=1, br;q=0.5, gzip;q=0.5", None),
     ("br, br;q=0, gzip", "gzip"), (" br ; q=0.9 ,gzip;q=0.8", "br")],
)  # fmt: skip
def test_the_encoding_the_client_weighs_highest_brotli_on_a_tie(
    client: TestClient, accept: str, encoding: str | None
) -> None:
    response, body = fetch_raw(client, "/assets/app.3f2a9c1b.js", accept)
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == encoding
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == len(body)
    assert decode(encoding, body) == SCRIPT  # brotli.decompress for `br`


def test_each_encoding_has_its_own_strong_etag(client: TestClient) -> None:
    url = "/assets/app.3f2a9c1b.js"
    tags = etags_by_encoding(client, url)
    # A cache holding several forms names them all; the one chosen is confirmed.
    both = f"{tags['gzip']}, {tags['br']}"
    held = client.get(url, headers={"accept-encoding": "br, gzip", "if-none-match": both})
    assert held.status_code == 304 and held.headers["etag"] == tags["br"]


def test_a_range_is_of_the_file_itself(client: TestClient) -> None:
    url = "/assets/app.3f2a9c1b.js"
    plain_tag = client.get(url, headers={"accept-encoding": "identity"}).headers["etag"]
    part = client.get(url, headers={"accept-encoding": "br", "range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == SCRIPT[:10]
    assert "content-encoding" not in part.headers and part.headers["etag"] == plain_tag
    br_tag = client.get(url, headers={"accept-encoding": "br"}).headers["etag"]
    stale = client.get(
        url, headers={"accept-encoding": "br", "range": "bytes=0-9", "if-range": br_tag}
    )
    assert stale.status_code == 200 and stale.content == SCRIPT  # the whole file instead


_CODINGS = ["br", "gzip", "x-gzip", "identity", "*", "deflate", "BR", ""]
_WEIGHTS = ["", ";q=0", ";q=0.5", ";q=1", ";q=1.000", ";q=0.", ";q=x", ";q=2", ";Q=0"]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_CODINGS), st.sampled_from(_WEIGHTS)), max_size=5))
def test_an_encoding_is_only_sent_when_accepted(
    client: TestClient, items: list[tuple[str, str]]
) -> None:
    accept = ", ".join(coding + weight for coding, weight in items)
    response, body = fetch_raw(client, "/assets/app.3f2a9c1b.js", accept)
    assert response.status_code == 200
    encoding = response.headers.get("content-encoding")
    assert decode(encoding, body) == SCRIPT
    if encoding is not None:
        # Items with a malformed weight are left out; a coding named twice gets the lower.
        kept = [(c.lower().removeprefix("x-"), w) for c, w in items if w not in (";q=x", ";q=2")]
        refused = (";q=0", ";q=0.", ";Q=0")
        named = [weight for coding, weight in kept if coding == encoding]
        starred = [weight for coding, weight in kept if coding == "*"]
        assert (
            not any(w in refused for w in named)
            if named
            else any(w not in refused for w in starred)
        ), accept


def test_spa_routes_get_index_but_missing_assets_get_a_real_404(client: TestClient) -> None:
    deep = client.get("/settings/profile", headers={"accept": "text/html"})
    assert deep.status_code == 200 and "<title>home</title>" in deep.text
    for missing in ("/assets/app.00000000.js", "/logo.png", "/assets/gone.css"):
        response = client.get(missing, headers={"accept": "text/html,*/*"})
        assert response.status_code == 404, missing
        assert "not here" in response.text


def test_without_spa_unknown_paths_are_404(tmp_path: Path, site_root: Path) -> None:
    with client_for(tmp_path, site_root) as client:
        response = client.get("/settings/profile", headers={"accept": "text/html"})
    assert response.status_code == 404 and "not here" in response.text


def test_only_get_and_head(client: TestClient) -> None:
    assert client.head("/").headers["content-length"] == str(len(client.get("/").content))
    posted = client.post("/", content=b"x")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/assets/../../secret.txt",
     "/%00index.html", "/..\\secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"],
)  # fmt: skip
def test_traversal_attempts_find_nothing(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert "TOP SECRET" not in response.text
    assert response.status_code in (200, 404)


def test_symlinks_out_of_the_root_are_not_followed(tmp_path: Path, site_root: Path) -> None:
    (site_root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with client_for(tmp_path, site_root) as client:
        response = client.get("/leak.txt")
    assert response.status_code == 404 and "TOP SECRET" not in response.text


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(
        st.sampled_from(["..", ".", "%2e%2e", "%2f", "secret.txt", "assets", "%00", "\\"]),
        max_size=6,
    )
)
def test_no_path_reaches_outside_the_root(client: TestClient, segments: list[str]) -> None:
    response = client.get("/" + "/".join(segments))
    assert "TOP SECRET" not in response.text


def test_a_site_under_a_path_serves_its_files_there(tmp_path: Path, site_root: Path) -> None:
    with client_for(tmp_path, site_root, path="/docs", spa=True) as client:
        page = client.get("/docs/about/")
        assert (page.status_code, page.text) == (200, "<p>about</p>")
        assert client.get("/docs/assets/app.3f2a9c1b.js").content == SCRIPT
        assert "<title>home</title>" in client.get("/docs/", headers={"accept": "text/html"}).text
        deep = client.get("/docs/settings/profile", headers={"accept": "text/html"})
        assert deep.status_code == 200 and "<title>home</title>" in deep.text
        assert client.get("/docs/nothing.js").text == "<h1>not here</h1>"
        assert client.get("/about/").status_code == 404  # not outside its path
        assert client.get("/api/ping").json() == {"pong": True}


def test_sites_by_host_name_serve_only_their_host(tmp_path: Path, site_root: Path) -> None:
    blog = tmp_path / "blog"
    blog.mkdir()
    (blog / "index.html").write_text("<h1>blog</h1>")
    sites = {
        "www": SiteSettings(root=str(site_root), host="www.example.test"),
        "blog": SiteSettings(root=str(blog), host="blog.example.test"),
    }
    app = App("sites", settings=Settings(data_dir=tmp_path / "data", sites=sites))

    @app.route("/api/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    with TestClient(app) as client:
        www = client.get("/about/", headers={"host": "www.example.test"})
        assert (www.status_code, www.text) == (200, "<p>about</p>")
        assert client.get("/", headers={"host": "blog.example.test"}).text == "<h1>blog</h1>"
        assert client.get("/about/", headers={"host": "blog.example.test"}).status_code == 404
        assert client.get("/", headers={"host": "other.example.test"}).status_code == 404
        ping = client.get("/api/ping", headers={"host": "blog.example.test"})
        assert ping.json() == {"pong": True}  # the app's routes answer on every host


@pytest.mark.parametrize(("name", "fingerprinted"), FINGERPRINTS.items())
def test_only_bundler_hashes_count_as_fingerprints(
    tmp_path: Path, site_root: Path, name: str, fingerprinted: bool
) -> None:
    (site_root / name).write_text("x")
    with client_for(tmp_path, site_root) as client:
        response = client.get(f"/{name}")
    assert response.status_code == 200
    expected = "public, max-age=31536000, immutable" if fingerprinted else "no-cache"
    assert response.headers["cache-control"] == expected


def test_the_longest_path_wins_whatever_the_order(tmp_path: Path, site_root: Path) -> None:
    pub = tmp_path / "pub"
    (pub / "notes").mkdir(parents=True)
    (pub / "index.html").write_text("<h1>pub</h1>")
    (pub / "notes" / "index.html").write_text("<h1>notes</h1>")
    sites = {  # the site at `/` first
        "www": SiteSettings(root=str(site_root), spa=True),
        "pub": SiteSettings(root=str(pub), path="/pub"),
    }
    app = App("sites", settings=Settings(data_dir=tmp_path / "data", sites=sites))
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/pub/").text == "<h1>pub</h1>"
        assert client.get("/pub/notes/").text == "<h1>notes</h1>"
        assert client.get("/pub/missing.js").status_code == 404
        bare = client.get("/pub", params={"a": "1"})
        assert (bare.status_code, bare.headers["location"]) == (308, "/pub/?a=1")
        inner = client.get("/pub/notes")
        assert (inner.status_code, inner.headers["location"]) == (308, "/pub/notes/")
        assert client.get("/about/").text == "<p>about</p>"


def test_a_directory_without_its_slash_is_redirected(tmp_path: Path, site_root: Path) -> None:
    with client_for(tmp_path, site_root) as client:
        moved = client.get("/about", params={"tab": "2"}, follow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == "/about/?tab=2"
        assert client.get("/about").text == "<p>about</p>"  # followed
        slashes = client.get("http://testserver//about", follow_redirects=False)
        assert slashes.headers["location"] == "/about/"  # never `//about/`: another host
    with client_for(tmp_path, site_root, path="/docs") as client:
        moved = client.get("/docs/about", follow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == "/docs/about/"


def test_paths_are_percent_decoded_once(tmp_path: Path, site_root: Path) -> None:
    (site_root / "A.txt").write_text("letter A")
    (site_root / "a%20b.txt").write_text("percent")
    (site_root / "a b.txt").write_text("space")
    with client_for(tmp_path, site_root) as client:
        assert client.get("/%41.txt").text == "letter A"
        assert client.get("/%2541.txt").status_code == 404  # names `%41.txt`
        assert client.get("/a%2520b.txt").text == "percent"
        assert client.get("/a%20b.txt").text == "space"


def test_several_ranges_or_another_unit_get_the_whole_file(client: TestClient) -> None:
    for header in ("bytes=0-0,-1", "bytes=0-9, 20-29", "items=0-4"):
        response = client.get("/video.bin", headers={"range": header})
        assert response.status_code == 200 and response.content == BIG, header
        assert "content-range" not in response.headers


def test_if_range_with_the_last_modified_date(tmp_path: Path, site_root: Path) -> None:
    hour_ago = os.stat(site_root / "video.bin").st_mtime - 3600
    os.utime(site_root / "video.bin", (hour_ago, hour_ago))
    with client_for(tmp_path, site_root) as client:
        date = client.head("/video.bin").headers["last-modified"]
        part = client.get("/video.bin", headers={"range": "bytes=0-9", "if-range": date})
        assert part.status_code == 206 and part.content == BIG[:10]
        older = "Mon, 01 Jan 2001 00:00:00 GMT"
        whole = client.get("/video.bin", headers={"range": "bytes=0-9", "if-range": older})
        assert whole.status_code == 200 and whole.content == BIG
        (site_root / "fresh.bin").write_bytes(BIG[:100])  # modified this second: weak
        date = client.head("/fresh.bin").headers["last-modified"]
        fresh = client.get("/fresh.bin", headers={"range": "bytes=0-9", "if-range": date})
        assert fresh.status_code == 200 and fresh.content == BIG[:100]


def test_compressed_files_are_served_as_archives(tmp_path: Path, site_root: Path) -> None:
    (site_root / "archive.tar.gz").write_bytes(gzip.compress(b"tar"))
    (site_root / "data.json.gz").write_bytes(gzip.compress(b"{}"))
    with client_for(tmp_path, site_root) as client:
        for name in ("archive.tar.gz", "data.json.gz", "assets/app.3f2a9c1b.js.gz"):
            response, body = fetch_raw(client, f"/{name}", "gzip, br")
            assert response.headers["content-type"] == "application/gzip", name
            assert (
                "content-encoding" not in response.headers
                and body == (site_root / name).read_bytes()
            )
