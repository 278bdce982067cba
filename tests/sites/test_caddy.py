"""Debian's caddy with the rendered config, in front of a real `shoestring run`."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, run_cli
from tests.sites.encodings import decode, fetch_raw
from tests.sites.fingerprints import FINGERPRINTS

pytestmark = pytest.mark.e2e


def test_caddy_serves_files_and_the_app_the_same_way(
    project: Path,
    start: type[Server],
    caddy: callable,
    tmp_path: Path,  # type: ignore[valid-type]
) -> None:
    build = tmp_path / "build"
    (build / "assets").mkdir(parents=True)
    shell = "<title>shell</title>" + "<p>loading</p>" * 100  # big enough for siblings
    (build / "index.html").write_text(shell)
    (build / "about.html").write_text("<p>about</p>")  # too small for them
    (build / "404.html").write_text("not here")
    script = "console.log(1);" * 200
    (build / "assets" / "app.3f2a9c1b.js").write_text(script)
    (project / "app.py").write_text(
        "from shoestring import App\n\napp = App('edge')\n\n\n"
        "@app.route('/api/hello')\nasync def hello() -> dict[str, str]:\n    return {'from': 'app'}\n"
    )
    (project / "shoestring.toml").write_text("[sites.www]\nspa = true\n")
    assert run_cli(project, "sites", "publish", "www", str(build)).returncode == 0
    app = start(project)
    app.wait_ready()
    block = run_cli(project, "sites", "caddyfile", "--upstream", f"127.0.0.1:{app.port}")
    assert block.returncode == 0, block.stderr
    edge = caddy(block.stdout)

    asset = httpx.get(edge + "/assets/app.3f2a9c1b.js", headers={"accept-encoding": "gzip"})
    assert asset.headers["server"] == "Caddy"  # served from disk, not through the app
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert asset.headers["content-encoding"] == "gzip"  # the sibling made at publish time
    assert asset.text == script  # httpx undid the gzip
    # Brotli when the client takes both, never against its q-values: as the app answers.
    cases = [("gzip, deflate, br", "br"), ("gzip;q=1, br;q=0", "gzip"), ("identity", None)]
    for path, content in [("/assets/app.3f2a9c1b.js", script), ("/", shell)]:
        for accept, encoding in cases:
            with httpx.Client() as client:
                answers = [fetch_raw(client, base + path, accept) for base in (edge, app.base_url)]
            assert answers[0][0].headers["server"] == "Caddy"
            for response, body in answers:
                assert response.headers.get("content-encoding") == encoding, (accept, response)
                assert decode(encoding, body) == content.encode()  # brotli.decompress for `br`
                assert response.headers.get_list("vary") == ["Accept-Encoding"]
    for base in (edge, app.base_url):
        small = httpx.get(base + "/about.html", headers={"accept-encoding": "br"})
        assert small.text == "<p>about</p>" and "vary" not in small.headers  # one form only

    home = httpx.get(edge + "/")
    assert "<title>shell</title>" in home.text and home.headers["cache-control"] == "no-cache"
    assert httpx.get(edge + "/api/hello").json() == {"from": "app"}
    assert httpx.get(edge + "/_health").json()["app"] == "edge"
    deep = httpx.get(edge + "/settings/profile", headers={"accept": "text/html"})
    assert deep.status_code == 200 and "<title>shell</title>" in deep.text
    missing = httpx.get(edge + "/assets/app.00000000.js")
    assert missing.status_code == 404 and missing.text == "not here"
    # Validators, conditional requests, ranges and types: each server with its
    # own ETag (Caddy makes its own), answering them the same way.
    for base in (edge, app.base_url):
        plain = {"accept-encoding": "identity"}
        first = httpx.get(base + "/assets/app.3f2a9c1b.js", headers=plain)
        assert first.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
        assert first.headers["etag"] and first.headers["last-modified"]
        again = httpx.get(
            base + "/assets/app.3f2a9c1b.js",
            headers={**plain, "if-none-match": first.headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""
        since = httpx.get(
            base + "/about.html", headers={"if-modified-since": first.headers["last-modified"]}
        )
        assert since.status_code == 304
        part = httpx.get(base + "/assets/app.3f2a9c1b.js", headers={**plain, "range": "bytes=0-13"})
        assert part.status_code == 206 and part.text == script[:14]
        assert part.headers["content-range"] == f"bytes 0-13/{len(script)}"
        page = httpx.get(base + "/about.html")
        assert page.headers["content-type"].startswith("text/html")


def test_caddy_and_the_app_agree_on_names_paths_and_directories(
    project: Path,
    start: type[Server],
    caddy: callable,
    tmp_path: Path,  # type: ignore[valid-type]
) -> None:
    www, pub = tmp_path / "www", tmp_path / "pub"
    for root in (www / "about", pub / "notes"):
        root.mkdir(parents=True)
    (www / "index.html").write_text("<h1>www</h1>")
    (www / "about" / "index.html").write_text("<p>about</p>")
    for name in FINGERPRINTS:
        (www / name).write_text(name)
    (www / "A.txt").write_text("letter A")
    (www / "a%20b.txt").write_text("percent")
    (www / "archive.tar.gz").write_bytes(gzip.compress(b"tar"))
    (www / "data.json.gz").write_bytes(gzip.compress(b"{}"))
    (pub / "index.html").write_text("<h1>pub</h1>")
    (pub / "notes" / "index.html").write_text("<h1>notes</h1>")
    # The site at `/` first: the one at `/pub` must still get its requests.
    (project / "shoestring.toml").write_text(
        f'[sites.www]\nroot = "{www}"\n\n[sites.pub]\nroot = "{pub}"\npath = "/pub"\n'
    )
    app = start(project)
    app.wait_ready()
    block = run_cli(project, "sites", "caddyfile", "--upstream", f"127.0.0.1:{app.port}")
    assert block.returncode == 0, block.stderr
    edge = caddy(block.stdout)

    for base in (edge, app.base_url):
        with httpx.Client(base_url=base) as client:
            for name, fingerprinted in FINGERPRINTS.items():
                response = client.get(f"/{name}")
                assert response.text == name, (base, name)
                expected = "public, max-age=31536000, immutable" if fingerprinted else "no-cache"
                assert response.headers["cache-control"] == expected, (base, name)
            assert client.get("/pub/").text == "<h1>pub</h1>"
            assert client.get("/pub/notes/").text == "<h1>notes</h1>"
            for path, location in [("/pub?a=1", "/pub/?a=1"), ("/pub/notes", "/pub/notes/"),
                                   ("/about?tab=2", "/about/?tab=2"), ("/about", "/about/")]:  # fmt: skip
                moved = client.get(path)
                assert moved.status_code == 308, (base, path)
                assert moved.headers["location"] == location, (base, path)
            assert client.get("/about/").text == "<p>about</p>"
            assert client.get("/%2541.txt").status_code == 404  # `%41.txt`, not `A.txt`
            assert client.get("/a%2520b.txt").text == "percent"
            for name in ("archive.tar.gz", "data.json.gz"):
                response, body = fetch_raw(client, f"/{name}", "gzip, br")
                assert response.headers["content-type"] == "application/gzip", (base, name)
                assert "content-encoding" not in response.headers
                assert body == (www / name).read_bytes()
    assert httpx.get(edge + "/index-DiwrgTda.css").headers["server"] == "Caddy"  # from disk
