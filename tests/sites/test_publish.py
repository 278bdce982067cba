"""Publishing and rolling back a site: atomic under load, releases kept."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, run_cli

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
    v1 = build(tmp_path / "build1", "v1aaaaaaaa1")
    v2 = build(tmp_path / "build2", "v2bbbbbbbb2")
    assert run_cli(project, "sites", "publish", "www", str(v1)).returncode == 0
    server = start(project)
    server.wait_ready()
    assert httpx.get(server.base_url + "/").text.startswith(
        "<script src=/assets/app.v1aaaaaaaa1.js>"
    )
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
                    body.startswith("<script src=/assets/app.v1aaaaaaaa1.js></script>v1aaaaaaaa1")
                    or body.startswith(
                        "<script src=/assets/app.v2bbbbbbbb2.js></script>v2bbbbbbbb2"
                    )
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
    assert "v2bbbbbbbb2" in httpx.get(server.base_url + "/").text
    asset = httpx.get(server.base_url + "/assets/app.v2bbbbbbbb2.js")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


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

    recorder = Recorder()
    release = releases.publish(tmp_path / "data", "www", build, progress=recorder)
    assert recorder.plan == (2, 5011)
    assert sorted(recorder.done) == [11, 5000]  # every file, as copied
    assert releases.current_root(tmp_path / "data", "www").name == release
