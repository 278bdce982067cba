"""`[cors]`: pages on other origins may call the app's routes, and only those pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shoestring import App, HTTPError, Settings
from shoestring.config import CorsSettings, load_settings
from shoestring.errors import ConfigError

PAGE = "https://www.example.com"


def cms_app(tmp_path: Path, **cors: object) -> App:
    settings = Settings(data_dir=tmp_path / "data", cors=CorsSettings(**cors))  # type: ignore[arg-type]
    app = App("cors", settings=settings)

    @app.route("/api/texts", methods=["PUT"])
    async def save() -> dict[str, bool]:
        return {"saved": True}

    @app.route("/api/locked")
    async def locked() -> None:
        raise HTTPError(401, "Sign in first.", code="signed_out")

    @app.route("/admin")
    async def admin() -> str:
        return "same origin only"

    @app.route("/api/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return app


def test_listed_origins_may_call_the_configured_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = cms_app(tmp_path, origins=[PAGE], paths=["/api"])
    with TestClient(app) as client:
        allowed = client.options(
            "/api/texts",
            headers={"Origin": PAGE, "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "authorization, content-type"},
        )  # fmt: skip
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == PAGE
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "PUT" in allowed.headers["access-control-allow-methods"]
        saved = client.put("/api/texts", headers={"Origin": PAGE})
        assert saved.json() == {"saved": True}
        assert saved.headers["access-control-allow-origin"] == PAGE
        # An error is readable by the page too: it can tell the person why.
        refused = client.get("/api/locked", headers={"Origin": PAGE})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == PAGE
        assert refused.json()["error"]["code"] == "signed_out"
        # a bug's 500 too: the page can show the request id to quote
        failed = client.get("/api/broken", headers={"Origin": PAGE})
        assert failed.status_code == 500
        assert failed.headers["access-control-allow-origin"] == PAGE
        assert failed.json()["error"]["request_id"] == failed.headers["x-request-id"]
        assert "RuntimeError: a bug" in caplog.text  # and the traceback is in the log


def test_other_origins_other_paths_and_system_routes_get_no_cors(tmp_path: Path) -> None:
    app = cms_app(tmp_path, origins=[PAGE], paths=["/api"])
    with TestClient(app) as client:
        stranger = client.options(
            "/api/texts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers
        outside = client.get("/admin", headers={"Origin": PAGE})
        assert outside.text == "same origin only"
        assert "access-control-allow-origin" not in outside.headers
        assert (
            "access-control-allow-origin"
            not in client.get("/apix", headers={"Origin": PAGE}).headers
        )
        health = client.get("/_health", headers={"Origin": PAGE})
        assert "access-control-allow-origin" not in health.headers


def test_any_origin_and_every_path_by_default(tmp_path: Path) -> None:
    app = cms_app(tmp_path, origins=["*"])
    with TestClient(app) as client:
        response = client.get("/admin", headers={"Origin": "https://anyone.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert (
            "access-control-allow-origin"
            not in client.get("/_health", headers={"Origin": PAGE}).headers
        )


def test_without_cors_config_no_page_elsewhere_may_call(tmp_path: Path) -> None:
    with TestClient(cms_app(tmp_path)) as client:
        response = client.put("/api/texts", headers={"Origin": PAGE})
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('origins = ["www.example.com"]', "is not an origin"),
        ('origins = ["https://www.example.com/app"]', "no path"),
        ('origins = ["*"]\ncredentials = true', "needs the origins listed"),
        ('origins = ["*"]\npaths = ["api"]', "must start with"),
    ],
)
def test_bad_cors_config_says_what_to_write(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "shoestring.toml").write_text("[cors]\n" + toml + "\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(tmp_path)
    assert "cors" in str(raised.value)
