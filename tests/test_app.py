from __future__ import annotations

import pytest
from starlette import responses
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from shoestring import App, HTTPError, JSONResponse, Request, Settings


def test_dict_becomes_json(app: App) -> None:
    @app.route("/notes/{note_id}")
    async def get_note(request: Request) -> dict[str, str]:
        return {"id": request.path_params["note_id"]}

    with TestClient(app) as client:
        response = client.get("/notes/42")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"id": "42"}


def test_json_is_written_as_starlette_writes_it(app: App) -> None:
    document = {"name": "Zoë ✓", "nested": [1, 2.5, None, True, {"quote": '"'}], "empty": {}}

    @app.route("/doc")
    async def doc() -> dict[str, object]:
        return document

    @app.route("/nan")
    async def nan() -> dict[str, float]:
        return {"x": float("nan")}  # not JSON: an error, never a silent `NaN`

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/doc").content == responses.JSONResponse(document).body
        assert client.get("/nan").status_code == 500


def test_str_becomes_text_and_none_becomes_204(app: App) -> None:
    @app.route("/text")
    async def text() -> str:
        return "héllo"

    @app.route("/nothing", methods=["DELETE"])
    async def nothing(request: Request) -> None:
        return None

    with TestClient(app) as client:
        text_response = client.get("/text")
        empty = client.delete("/nothing")
    assert text_response.text == "héllo"
    assert text_response.headers["content-type"].startswith("text/plain")
    assert empty.status_code == 204
    assert empty.content == b""


def test_a_response_is_returned_as_is(app: App) -> None:
    @app.route("/made", methods=["POST"])
    async def made(request: Request) -> JSONResponse:
        return JSONResponse(await request.json(), status_code=201, headers={"x-made": "yes"})

    with TestClient(app) as client:
        response = client.post("/made", json={"a": [1, 2]})
    assert response.status_code == 201
    assert response.headers["x-made"] == "yes"
    assert response.json() == {"a": [1, 2]}


def test_wrong_method_is_405_with_allow_header(app: App) -> None:
    @app.route("/only-post", methods=["POST"])
    async def only_post() -> str:
        return "ok"

    with TestClient(app) as client:
        response = client.get("/only-post")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_405_allows_what_every_route_at_the_path_answers(app: App) -> None:
    @app.route("/notes", methods=["GET"])
    async def list_notes() -> list[str]:
        return []

    @app.route("/notes", methods=["POST"])
    async def add_note() -> None:
        return None

    with TestClient(app) as client:
        response = client.put("/notes")
        assert client.post("/notes").status_code == 204
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_path_is_a_json_404_with_the_request_id(client: TestClient) -> None:
    response = client.get("/missing")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["request_id"] == response.headers["x-request-id"]


def test_http_error_becomes_a_json_error(app: App) -> None:
    @app.route("/teapot")
    async def teapot() -> None:
        raise HTTPError(418, "short and stout", code="teapot")

    with TestClient(app) as client:
        response = client.get("/teapot")
    assert response.status_code == 418
    assert response.json()["error"]["code"] == "teapot"
    assert response.json()["error"]["message"] == "short and stout"


def test_starlette_http_exception_becomes_a_json_error_with_its_headers(app: App) -> None:
    @app.route("/busy")
    async def busy() -> None:
        raise HTTPException(429, "Slow down.", headers={"Retry-After": "3"})

    with TestClient(app) as client:
        response = client.get("/busy")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    error = response.json()["error"]
    assert error["message"] == "Slow down."
    assert error["request_id"] == response.headers["x-request-id"]


def test_unhandled_exception_is_a_500_without_traceback(app: App) -> None:
    @app.route("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at /srv/app.py line 3")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]


def test_returning_an_unsupported_type_is_a_500_not_a_crash(app: App) -> None:
    @app.route("/odd")
    async def odd() -> object:
        return {1, 2}

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/odd").status_code == 500


def test_blocking_handler_is_refused_at_registration(app: App) -> None:
    def blocking(request: Request) -> str:
        return "x"

    with pytest.raises(TypeError, match="async def"):
        app.route("/sync")(blocking)  # type: ignore[type-var]


@pytest.mark.parametrize("path", ["/_health", "/_ready", "relative"])
def test_reserved_and_relative_paths_are_refused(app: App, path: str) -> None:
    async def handler() -> str:
        return "x"

    with pytest.raises(ValueError):
        app.route(path)(handler)


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 64, "a/b"])
def test_bad_app_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="App name"):
        App(name)


def test_routes_added_after_first_request_are_served(client: TestClient, app: App) -> None:
    assert client.get("/late").status_code == 404

    @app.route("/late")
    async def late() -> str:
        return "here"

    assert client.get("/late").text == "here"


def test_startup_and_shutdown_hooks_run_in_order(settings: Settings) -> None:
    app = App("hooks", settings=settings)
    events: list[str] = []

    @app.on_startup
    async def first() -> None:
        events.append("start-1")

    @app.on_startup
    async def second() -> None:
        events.append("start-2")

    @app.on_shutdown
    async def stop() -> None:
        events.append("stop")

    @app.route("/")
    async def home() -> str:
        events.append("request")
        return "ok"

    with TestClient(app) as client:
        client.get("/")
    assert events == ["start-1", "start-2", "request", "stop"]


def test_health_answers_and_names_the_app(client: TestClient) -> None:
    response = client.get("/_health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "app": "testapp"}


def test_settings_are_loaded_from_the_working_directory_when_not_given(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    (tmp_path / "shoestring.toml").write_text('data_dir = "store"\n')
    monkeypatch.chdir(tmp_path)
    app = App("fromcwd")
    assert app.settings.data_dir == tmp_path / "store"
    assert app.data_dir.is_dir()
