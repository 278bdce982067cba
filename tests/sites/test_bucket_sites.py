"""Sites published into object storage: served like directory sites, switched atomically."""

from __future__ import annotations

import gzip
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from shoestring import App, ConfigError, Settings, load_settings
from shoestring.config import SiteSettings, StorageSettings
from shoestring.sites import PublishError
from shoestring.sites.bucket_releases import BucketLayout, BucketReleases
from shoestring.storage import Bucket
from tests.e2e.conftest import Server, run_cli
from tests.sites.encodings import decode, etags_by_encoding, fetch_raw

# Above files.SMALL_FILE: streamed from the bucket with ranged GETs, never held in memory.
HUGE = os.urandom(2 * 1024 * 1024 + 4321)
HEADERS = {"content-security-policy": "default-src 'self'"}
SCRIPT = b"console.log('app');" * 100


def build(root: Path, version: str = "v1") -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        f"<!doctype html><title>home {version}</title><div id=app></div>" + " " * 2000
    )
    (root / "404.html").write_text("<h1>not here</h1>")
    (root / "assets" / "app.3f2a9c1b.js").write_bytes(SCRIPT)
    (root / "assets" / "style.css").write_text("body { color: red }")
    (root / "about").mkdir()
    (root / "about" / "index.html").write_text("<p>about</p>")
    (root / "video.bin").write_bytes(HUGE)
    return root


def make_app(tmp_path: Path, **site: Any) -> App:
    storage = site.pop("storage", StorageSettings())
    return App(
        "bucketsites",
        settings=Settings(
            data_dir=tmp_path / "data",
            storage=storage,
            sites={"www": SiteSettings(bucket="site", **site)},
        ),
    )


def releases_of(app: App, prefix: str = "") -> BucketReleases:
    layout = BucketLayout.for_site("www", prefix)
    return BucketReleases(app.storage.bucket("site"), layout, site="www")


def call(client: TestClient, function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an async storage call on the app's own event loop, as app code would."""
    assert client.portal is not None
    return client.portal.call(lambda: function(*args, **kwargs))


@pytest.fixture
def app(tmp_path: Path) -> App:
    return make_app(tmp_path, spa=True, headers=HEADERS)


@pytest.fixture
def client(app: App, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app) as client:
        call(client, releases_of(app).publish, build(tmp_path / "v1"))
        yield client


# -- configuration ---------------------------------------------------------


def test_root_and_bucket_together_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text('[sites.www]\nroot = "dist"\nbucket = "site"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    message = str(caught.value)
    assert "`sites.www`" in message and "`root`" in message and "`bucket`" in message


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ('bucket = "Not_A_Bucket"', "bucket name 'Not_A_Bucket' is invalid"),
        ('bucket = "site"\nprefix = "../other/"', "`prefix` = '../other/'"),
        ('bucket = "site"\nprefix = "/www/"', "no leading `/`"),
        ('prefix = "www/"', "`prefix` is only used with `bucket`"),
    ],
)
def test_bad_bucket_settings_say_what_is_wrong(tmp_path: Path, toml: str, complaint: str) -> None:
    (tmp_path / "shoestring.toml").write_text(f"[sites.www]\n{toml}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "`sites.www`" in str(caught.value) and complaint in str(caught.value)


def test_prefix_defaults_to_the_site_name_and_is_honoured(tmp_path: Path) -> None:
    assert BucketLayout.for_site("www", "").prefix == "www/"
    other = make_app(tmp_path, prefix="sites/www")
    with TestClient(other) as client:
        call(client, releases_of(other, "sites/www").publish, build(tmp_path / "v1"))
        keys = call(client, _keys, other.storage.bucket("site"))
        assert client.get("/").status_code == 200
    assert keys and all(key.startswith("sites/www/") for key in keys)


async def _keys(bucket: Bucket) -> list[str]:
    return [item.key async for item in bucket.list() if not isinstance(item, str)]


# -- serving: the same promises as a directory site ------------------------


def test_files_have_types_validators_cache_policy_and_extra_headers(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "<title>home v1</title>" in home.text
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert home.headers["cache-control"] == "no-cache"
    assert home.headers["etag"].startswith('"') and not home.headers["etag"].startswith("W/")
    assert "last-modified" in home.headers and home.headers["accept-ranges"] == "bytes"
    assert home.headers["content-security-policy"] == "default-src 'self'"
    asset = client.get("/assets/app.3f2a9c1b.js", headers={"accept-encoding": "identity"})
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
    assert client.get("/assets/style.css").headers["content-type"] == "text/css; charset=utf-8"
    assert client.get("/about/").text == "<p>about</p>"
    assert client.get("/about").text == "<p>about</p>"


def test_conditional_requests_get_304(client: TestClient) -> None:
    first = client.get("/assets/style.css")
    again = client.get("/assets/style.css", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    since = client.get("/", headers={"if-modified-since": client.get("/").headers["last-modified"]})
    assert since.status_code == 304
    assert client.get("/", headers={"if-none-match": '"other"'}).status_code == 200


def test_ranges_of_a_file_streamed_from_the_bucket(client: TestClient) -> None:
    part = client.get("/video.bin", headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == HUGE[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(HUGE)}"
    assert client.get("/video.bin", headers={"range": "bytes=-10"}).content == HUGE[-10:]
    beyond = client.get("/video.bin", headers={"range": f"bytes={len(HUGE)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(HUGE)}"
    whole = client.get("/video.bin")
    assert whole.status_code == 200 and whole.content == HUGE
    assert whole.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [("gzip, deflate, br", "br"), ("gzip;q=1, br;q=0", "gzip"), ("identity", None)],
)
def test_siblings_made_at_publish_are_served_by_accept_encoding(
    client: TestClient, accept: str, encoding: str | None
) -> None:
    response, body = fetch_raw(client, "/assets/app.3f2a9c1b.js", accept)
    assert response.headers.get("content-encoding") == encoding
    assert response.headers["vary"] == "Accept-Encoding"
    assert decode(encoding, body) == SCRIPT  # brotli.decompress for `br`
    if encoding is not None:
        assert len(body) < len(SCRIPT)
    small, _ = fetch_raw(client, "/assets/style.css", accept)
    assert "content-encoding" not in small.headers  # too small to be worth a sibling


def test_each_encoding_has_its_own_strong_etag(client: TestClient) -> None:
    etags_by_encoding(client, "/assets/app.3f2a9c1b.js")  # the objects' MD5s


def test_a_sibling_the_build_brought_is_used(app: App, tmp_path: Path) -> None:
    root = build(tmp_path / "own")
    (root / "about" / "index.html.gz").write_bytes(gzip.compress(b"<p>zipped about</p>"))
    own = brotli.compress(SCRIPT, quality=1)
    (root / "assets" / "app.3f2a9c1b.js.br").write_bytes(own)
    with TestClient(app) as client:
        call(client, releases_of(app).publish, root)
        response = client.get("/about/", headers={"accept-encoding": "gzip"})
        _, body = fetch_raw(client, "/assets/app.3f2a9c1b.js", "br")
    assert response.headers["content-encoding"] == "gzip" and response.text == "<p>zipped about</p>"
    assert body == own  # not replaced by one made at publish


def test_a_file_that_does_not_shrink_gets_no_sibling(app: App, tmp_path: Path) -> None:
    root = build(tmp_path / "noise")
    noise = os.urandom(4096)
    (root / "assets" / "noise.js").write_bytes(noise)
    with TestClient(app) as client:
        release = call(client, releases_of(app).publish, root)
        keys = call(client, _keys, app.storage.bucket("site"))
        response, body = fetch_raw(client, "/assets/noise.js", "br, gzip")
    made = {key.removeprefix(f"www/releases/{release}/") for key in keys}
    assert {"assets/app.3f2a9c1b.js.br", "assets/app.3f2a9c1b.js.gz"} <= made
    assert not {"assets/noise.js.br", "assets/noise.js.gz"} & made
    assert "content-encoding" not in response.headers and body == noise


def test_spa_routes_get_index_but_missing_assets_get_a_real_404(client: TestClient) -> None:
    deep = client.get("/notes/42", headers={"accept": "text/html"})
    assert deep.status_code == 200 and "<title>home v1</title>" in deep.text
    for missing in ("/app.0000aaaa.js", "/assets/app.00000000.js", "/logo.png"):
        response = client.get(missing, headers={"accept": "text/html,*/*"})
        assert response.status_code == 404, missing
        assert "not here" in response.text
        assert response.headers["content-security-policy"] == "default-src 'self'"


def test_without_spa_unknown_paths_get_the_not_found_page(tmp_path: Path) -> None:
    app = make_app(tmp_path, not_found="404.html")
    with TestClient(app) as client:
        assert client.get("/").status_code == 404  # nothing published yet
        call(client, releases_of(app).publish, build(tmp_path / "v1"))
        response = client.get("/settings/profile", headers={"accept": "text/html"})
    assert response.status_code == 404 and "not here" in response.text


def test_head_and_other_methods(client: TestClient) -> None:
    head = client.head("/video.bin")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(HUGE))
    for encoding in ("identity", "gzip", "br"):
        wanted = {"accept-encoding": encoding}
        head = client.head("/", headers=wanted)
        assert (
            head.headers["content-length"]
            == client.get("/", headers=wanted).headers["content-length"]
        )
    posted = client.post("/", content=b"x")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"


def test_small_files_are_served_from_memory_large_ones_from_the_bucket(
    app: App, client: TestClient
) -> None:
    assert client.get("/assets/style.css").status_code == 200  # read once, now in memory
    live = call(client, releases_of(app).live)
    bucket = app.storage.bucket("site")
    for name in ("assets/style.css", "video.bin"):
        assert call(client, bucket.delete, f"www/releases/{live}/{name}")
    assert client.get("/assets/style.css").text == "body { color: red }"
    assert client.get("/video.bin").status_code == 404  # streamed: gone is gone


@pytest.fixture
def outside(app: App, client: TestClient) -> TestClient:
    bucket = app.storage.bucket("site")
    live = call(client, releases_of(app).live)
    for key in ("secret.txt", "www/secret.txt", "www/releases/secret.txt", f"www/{live}.txt"):
        call(client, bucket.put, key, b"TOP SECRET")
    return client


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/assets/../../secret.txt",
     "/../../secret.txt", "/../current", "/..\\secret.txt", "/%00index.html",
     "/assets/%2e%2e/%2e%2e/%2e%2e/secret.txt", "/www/secret.txt"],
)  # fmt: skip
def test_no_key_outside_the_release_is_reachable(outside: TestClient, path: str) -> None:
    response = outside.get(path)
    assert "TOP SECRET" not in response.text and response.status_code in (200, 404)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(
        st.sampled_from(["..", ".", "%2e%2e", "%2f", "secret.txt", "www", "releases", "%00"]),
        max_size=6,
    )
)
def test_no_path_reaches_outside_the_release(outside: TestClient, segments: list[str]) -> None:
    response = outside.get("/" + "/".join(segments))
    assert "TOP SECRET" not in response.text


# -- publishing ------------------------------------------------------------


def test_publish_goes_live_in_one_switch_and_rolls_back(
    app: App, client: TestClient, tmp_path: Path
) -> None:
    releases = releases_of(app)
    first = call(client, releases.live)
    second = call(client, releases.publish, build(tmp_path / "v2", "v2"))
    # A publish in this process is seen at once, not at the next look at the pointer.
    assert "<title>home v2</title>" in client.get("/").text
    assert call(client, releases.releases) == [first, second]
    assert call(client, releases.rollback) == first
    assert "<title>home v1</title>" in client.get("/").text
    assert call(client, releases.rollback, second) == second
    assert "<title>home v2</title>" in client.get("/").text
    call(client, releases.rollback, first)
    with pytest.raises(PublishError, match="has no release before"):
        call(client, releases.rollback)
    with pytest.raises(PublishError, match=r"has no release 20990101T000000\.000-beef"):
        call(client, releases.rollback, "20990101T000000.000-beef")
    with pytest.raises(PublishError, match="is not a release id"):
        call(client, releases.rollback, "../v1")


def test_a_publish_failing_midway_leaves_the_old_release_serving(tmp_path: Path) -> None:
    # The fs backend refuses objects over max_object_size: a real upload
    # failure after other files of the release were stored.
    app = make_app(tmp_path, spa=True, storage=StorageSettings(max_object_size=1024 * 1024))
    small = tmp_path / "v1"
    small.mkdir()
    (small / "index.html").write_text("<title>home v1</title>")
    releases = releases_of(app)
    with TestClient(app) as client:
        first = call(client, releases.publish, small)
        with pytest.raises(PublishError, match="the live release is unchanged"):
            call(client, releases.publish, build(tmp_path / "v2", "v2"))  # video.bin is 2 MiB
        assert "<title>home v1</title>" in client.get("/").text
        assert client.get("/assets/style.css").status_code == 404
        assert call(client, releases.live) == first
        assert call(client, releases.releases) == [first]
        keys = call(client, _keys, app.storage.bucket("site"))
    assert all(key.startswith(("www/current", f"www/releases/{first}")) for key in keys), keys


def test_a_build_with_a_name_that_cannot_be_a_key_is_refused_before_uploading(
    app: App, client: TestClient, tmp_path: Path
) -> None:
    root = build(tmp_path / "bad", "bad")
    (root / "tab\x01name.txt").write_text("x")
    with pytest.raises(PublishError, match="cannot be published"):
        call(client, releases_of(app).publish, root)
    with pytest.raises(PublishError, match=r"has no index\.html"):
        call(client, releases_of(app).publish, root / "assets")
    assert len(call(client, releases_of(app).releases)) == 1


def test_old_releases_beyond_the_kept_five_are_deleted(app: App, tmp_path: Path) -> None:
    releases = releases_of(app)
    with TestClient(app) as client:
        published = []
        for version in range(7):
            root = tmp_path / f"v{version}"
            root.mkdir()
            (root / "index.html").write_text(f"v{version}")
            published.append(call(client, releases.publish, root))
        assert call(client, releases.releases) == published[2:]
        keys = call(client, _keys, app.storage.bucket("site"))
        assert client.get("/").text == "v6"
    assert not [key for key in keys if published[0] in key or published[1] in key]


def test_a_publish_from_another_process_is_seen_within_a_second(
    app: App, client: TestClient, tmp_path: Path
) -> None:
    # Another App on the same data directory stands for `shoestring sites publish`.
    other = make_app(tmp_path)
    with TestClient(other) as publisher:
        call(publisher, releases_of(other).publish, build(tmp_path / "v2", "v2"))
    deadline = time.monotonic() + 1.5
    while "home v2" not in client.get("/").text:
        assert time.monotonic() < deadline, "the new release was not served within a second"
        time.sleep(0.05)


# -- the CLI and a real server ---------------------------------------------


@pytest.mark.e2e
def test_cli_publish_ls_rollback_under_load(
    project: Path, start: type[Server], tmp_path: Path
) -> None:
    (project / "shoestring.toml").write_text(
        '[storage]\nmax_object_size = 1048576\n[sites.www]\nbucket = "site"\nspa = true\n'
    )
    (project / "app.py").write_text("from shoestring import App\n\napp = App('site')\n")
    v1 = _versioned(tmp_path / "build1", "1a1aaaaaaa1")
    v2 = _versioned(tmp_path / "build2", "2b2bbbbbbb2")
    published = run_cli(project, "sites", "publish", "www", str(v1))
    assert published.returncode == 0, published.stderr
    server = start(project)
    server.wait_ready()
    assert "1a1aaaaaaa1" in httpx.get(server.base_url + "/notes/1").text
    zipped = httpx.get(server.base_url + "/", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"

    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base_url) as client:
            while not stop.is_set():
                response = client.get("/deep/link", headers={"accept": "text/html"})
                version = response.text[response.text.find("</script>") + 9 :][:11]
                seen.add(version)
                if response.status_code != 200 or not response.text.startswith(
                    f"<script src=/assets/app.{version}.js></script>{version}"
                ):
                    errors.append(f"{response.status_code} {response.text[:60]}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        published = run_cli(project, "sites", "publish", "www", str(v2))
        assert published.returncode == 0, published.stderr
        _eventually(lambda: "2b2bbbbbbb2" in httpx.get(server.base_url + "/").text)
        assert run_cli(project, "sites", "rollback", "www").returncode == 0
        _eventually(lambda: "1a1aaaaaaa1" in httpx.get(server.base_url + "/").text)
        listed = run_cli(project, "sites", "ls", "www").stdout
        assert len(re.findall(r"\d{8}T\d{6}\.\d{3}-[0-9a-f]{4}", listed)) == 2, listed
        assert "yes" in listed
        (v2 / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))  # over max_object_size
        failed = run_cli(project, "sites", "publish", "www", str(v2))
        assert failed.returncode == 1 and "the live release is unchanged" in failed.stderr
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == [] and {"1a1aaaaaaa1", "2b2bbbbbbb2"} <= seen
    time.sleep(1.2)  # past the pointer's once-a-second look
    assert "1a1aaaaaaa1" in httpx.get(server.base_url + "/").text
    asset = httpx.get(server.base_url + "/assets/app.1a1aaaaaaa1.js")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    caddyfile = run_cli(project, "sites", "caddyfile").stdout
    assert "root *" not in caddyfile  # no files on disk: Caddy proxies the site to the app


def _versioned(directory: Path, version: str) -> Path:
    (directory / "assets").mkdir(parents=True)
    # index.html names its own asset: a response mixing releases would show.
    (directory / "index.html").write_text(
        f"<script src=/assets/app.{version}.js></script>{version}" + " " * 2000
    )
    (directory / "assets" / f"app.{version}.js").write_text(f"/* {version} */")
    return directory


def _eventually(check: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the pointer's once-a-second look"
        time.sleep(0.05)
