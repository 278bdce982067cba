"""A single-page app in Debian's chromium, driven by Playwright, served by `shoestring run`.

Chromium is required under CI (`CI=true`, see .ci/run); elsewhere the test
skips with the reason when /usr/bin/chromium or Playwright is missing
(tests/browser.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser  # noqa: F401 - the fixture: skips or fails without chromium
from tests.e2e.conftest import Server, run_cli

pytestmark = pytest.mark.e2e

SCRIPT = "assets/app.1a2b3c4d.js"  # fingerprinted: cached for a year, never revalidated
# The app renders the route it was opened at: proof that the script ran.
APP_JS = (
    "document.getElementById('app').textContent = 'route ' + location.pathname;\n"
    "document.body.dataset.rendered = 'yes';\n" + "// padding past the gzip threshold\n" * 40
)


def spa(directory: Path) -> Path:
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text(
        "<!doctype html><html><head><title>notes</title>"
        "<link rel=stylesheet href=/assets/style.css></head>"
        f"<body><main id=app>loading</main><script src=/{SCRIPT}></script></body></html>"
    )
    (directory / SCRIPT).write_text(APP_JS)
    (directory / "assets" / "style.css").write_text("main { color: rgb(0, 128, 0) }")
    return directory


@pytest.fixture(params=["bucket", "directory"])
def server(
    request: pytest.FixtureRequest, project: Path, start: type[Server], tmp_path: Path
) -> Server:
    where = 'bucket = "site"\n' if request.param == "bucket" else ""
    (project / "shoestring.toml").write_text(f"[sites.www]\n{where}spa = true\n")
    (project / "app.py").write_text("from shoestring import App\n\napp = App('notes')\n")
    published = run_cli(project, "sites", "publish", "www", str(spa(tmp_path / "dist")))
    assert published.returncode == 0, published.stderr
    server = start(project)
    server.wait_ready()
    return server


def requests_seen(server: Server, path: str, count: int) -> list[int]:
    """Statuses of the requests for `path` the server logged, in order, once `count` are in.

    The server writes its info lines together, a fraction of a second apart.
    """
    deadline = time.monotonic() + 5
    while True:
        statuses = []
        for line in server.log.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("logger") == "shoestring.access" and entry.get("path") == path:
                    statuses.append(entry["status"])
        if len(statuses) >= count or time.monotonic() > deadline:
            return statuses
        time.sleep(0.05)


def test_spa_deep_link_missing_asset_and_cached_reload(
    browser: Any,  # noqa: F811
    server: Server,
) -> None:
    page = browser.new_page()
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))

    # A deep link is the app, and its script renders the route.
    opened = page.goto(server.base_url + "/notes/42")
    assert opened is not None and opened.status == 200
    page.wait_for_selector("body[data-rendered=yes]")
    assert page.inner_text("#app") == "route /notes/42"
    assert page.eval_on_selector("#app", "e => getComputedStyle(e).color") == "rgb(0, 128, 0)"
    script = next(r for r in responses if r.url.endswith(SCRIPT))
    assert script.status == 200
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"

    # A reload revalidates the page and stylesheet (no-cache: 304) and takes
    # the fingerprinted script from the browser's cache without asking.
    responses.clear()
    reloaded = page.reload()
    assert reloaded is not None
    page.wait_for_selector("body[data-rendered=yes]")
    by_type = {r.request.resource_type: r for r in responses}
    assert by_type["stylesheet"].status == 304
    assert by_type["stylesheet"].headers["cache-control"] == "no-cache"
    assert by_type["script"].headers["cache-control"] == "public, max-age=31536000, immutable"
    assert requests_seen(server, "/notes/42", 2) == [200, 304]
    assert requests_seen(server, "/assets/style.css", 2) == [200, 304]
    # Logged before the reload finished, so written by now: the reload never asked for it.
    assert requests_seen(server, "/" + SCRIPT, 1) == [200]

    # A missing asset is a real 404, whether opened or fetched by the app.
    missing = page.goto(server.base_url + "/app.0000aaaa.js")
    assert missing is not None and missing.status == 404
    page.goto(server.base_url + "/")
    fetched = page.evaluate("fetch('/app.0000aaaa.js').then(r => r.status)")
    assert fetched == 404
    page.close()
