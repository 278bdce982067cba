"""Publishing and rolling back a site: atomic under load, releases kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import brotli
import httpx
import pytest

from tests.e2e.conftest import Server, run_cli
from tests.sites.encodings import decode, fetch_raw

pytestmark = pytest.mark.e2e


def build(directory: Path, version: str) -> Path:
    (directory / "assets").mkdir(parents=True)
    # index.html names its own asset: a response mixing releases would show.
    (directory / "index.html").write_text(
        f"<script src=/assets/app.{version}.js></script>{version}" + " " * 2000
    )
    (directory / "assets" / f"app.{version}.js").write_text(f"/* {version} */")
    return directory


def test_publish_switch_and_rollback_under_load(
    project: Path, start: type[Server], tmp_path: Path
) -> None:
    (project / "shoestring.toml").write_text("[sites.www]\nspa = true\n")
    (project / "app.py").write_text("from shoestring import App\n\napp = App('site')\n")
    v1 = build(tmp_path / "build1", "1a1aaaa1")
    v2 = build(tmp_path / "build2", "2b2bbbb2")
    assert run_cli(project, "sites", "publish", "www", str(v1)).returncode == 0
    server = start(project)
    server.wait_ready()
    assert httpx.get(server.base_url + "/").text.startswith("<script src=/assets/app.1a1aaaa1.js>")
    # gzip siblings were made at publish time.
    zipped = httpx.get(server.base_url + "/", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"

    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base_url) as client:
            while not stop.is_set():
                response = client.get("/deep/link", headers={"accept": "text/html"})
                body = response.text
                if response.status_code != 200 or not (
                    body.startswith("<script src=/assets/app.1a1aaaa1.js></script>1a1aaaa1")
                    or body.startswith("<script src=/assets/app.2b2bbbb2.js></script>2b2bbbb2")
                ):
                    errors.append(f"{response.status_code} {body[:60]}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        published = run_cli(project, "sites", "publish", "www", str(v2))
        assert published.returncode == 0, published.stderr
        for _ in range(3):
            assert run_cli(project, "sites", "rollback", "www").returncode == 0
            listed = run_cli(project, "sites", "ls", "www").stdout
            assert "yes" in listed
            latest = sorted(p.name for p in (project / "data/sites/www/releases").iterdir())[-1]
            assert run_cli(project, "sites", "rollback", "www", latest).returncode == 0
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == []
    assert "2b2bbbb2" in httpx.get(server.base_url + "/").text
    asset = httpx.get(server.base_url + "/assets/app.2b2bbbb2.js")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_rollback_takes_only_a_release_of_that_site(project: Path, tmp_path: Path) -> None:
    (project / "shoestring.toml").write_text("[sites.pub]\n[sites.www]\n")
    for name in ("pub", "www"):
        assert (
            run_cli(project, "sites", "publish", name, str(build(tmp_path / name, name))).returncode
            == 0
        )
    live = (project / "data/sites/pub/current").resolve()
    other = (project / "data/sites/www/current").resolve().name
    for release in ("../../..", "..", ".", "../../www/releases/" + other, other, "current"):
        result = run_cli(project, "sites", "rollback", "pub", release)
        assert result.returncode == 1, release
        assert "is live" not in result.stdout
        assert "no release" in result.stderr or "is not a release id" in result.stderr, release
        assert (project / "data/sites/pub/current").resolve() == live


def test_publish_refuses_a_directory_without_index(project: Path, tmp_path: Path) -> None:
    (project / "shoestring.toml").write_text("[sites.www]\n")
    (tmp_path / "empty").mkdir()
    result = run_cli(project, "sites", "publish", "www", str(tmp_path / "empty"))
    assert result.returncode == 1 and "has no index.html" in result.stderr
    unknown = run_cli(project, "sites", "publish", "nope", str(tmp_path / "empty"))
    assert unknown.returncode == 1 and "no [sites.nope]" in unknown.stderr


def test_a_directory_publish_reports_its_progress(tmp_path: Path) -> None:
    from shoestring.sites import publish as releases

    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_text("<h1>hi</h1>")
    (build / "assets" / "app.js").write_bytes(b"x" * 5000)

    class Recorder:
        def __init__(self) -> None:
            self.plan: tuple[int, int] | None = None
            self.done: list[int] = []

        def planned(self, files: int, size: int) -> None:
            self.plan = (files, size)

        def uploaded(self, path: str, size: int) -> None:
            self.done.append(size)
            if path.endswith(".js"):  # reported once compressed too
                (staging,) = (tmp_path / "data/sites/www/releases").glob("*.tmp")
                assert (staging / f"{path}.br").is_file() and (staging / f"{path}.gz").is_file()

    recorder = Recorder()
    release = releases.publish(tmp_path / "data", "www", build, progress=recorder)
    assert recorder.plan == (2, 5011)
    assert sorted(recorder.done) == [11, 5000]  # every file, as copied
    assert releases.current_root(tmp_path / "data", "www").name == release


SCRIPT = b"".join(b"export function f%d(x) { return x * %d; }\n" % (i, i) for i in range(400))
OWN_BR = brotli.compress(SCRIPT, quality=1)
NOISE = os.urandom(4096)


def siblings_build(directory: Path) -> Path:
    """A build with one file of each kind publishing treats differently."""
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text("<title>shell</title>" + "<p>hello</p>" * 200)
    (directory / "assets" / "app.js").write_bytes(SCRIPT)
    (directory / "assets" / "own.js").write_bytes(SCRIPT)
    (directory / "assets" / "own.js.br").write_bytes(OWN_BR)  # brought by the build
    (directory / "assets" / "noise.js").write_bytes(NOISE)  # does not shrink
    (directory / "assets" / "tiny.js").write_text("let a = 1;")  # too small to bother
    (directory / "logo.png").write_bytes(NOISE)  # not text
    return directory


def test_a_published_directory_gets_brotli_and_gzip_siblings(
    project: Path, start: type[Server], tmp_path: Path
) -> None:
    (project / "shoestring.toml").write_text("[sites.www]\n")
    (project / "app.py").write_text("from shoestring import App\n\napp = App('site')\n")
    published = run_cli(project, "sites", "publish", "www", str(siblings_build(tmp_path / "b")))
    assert published.returncode == 0, published.stderr
    live = (project / "data/sites/www/current").resolve()
    assert brotli.decompress((live / "assets/app.js.br").read_bytes()) == SCRIPT
    assert (live / "assets/own.js.br").read_bytes() == OWN_BR  # left as the build made it
    assert (live / "assets/own.js.gz").is_file()
    made = {path.name for path in live.rglob("*") if path.suffix in (".br", ".gz")}
    assert made == {"index.html.br", "index.html.gz", "app.js.br", "app.js.gz", "own.js.br",
                    "own.js.gz"}  # fmt: skip

    server = start(project)
    server.wait_ready()
    with httpx.Client(base_url=server.base_url) as client:
        for accept, encoding in [("gzip, deflate, br", "br"), ("gzip;q=1, br;q=0", "gzip"),
                                 ("identity", None)]:  # fmt: skip
            response, body = fetch_raw(client, "/assets/app.js", accept)
            assert response.headers.get("content-encoding") == encoding
            assert decode(encoding, body) == SCRIPT
            assert response.headers["vary"] == "Accept-Encoding"
        response, body = fetch_raw(client, "/assets/own.js", "br")
        assert body == OWN_BR
        response, body = fetch_raw(client, "/assets/noise.js", "br, gzip")
        assert "content-encoding" not in response.headers and body == NOISE
        assert "vary" not in response.headers  # one form only
