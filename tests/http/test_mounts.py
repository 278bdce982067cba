"""Any ASGI app mounts unchanged: FastAPI and Starlette, with their lifespans."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from shoestring import App


def test_fastapi_app_serves_its_routes_validation_and_openapi(app: App) -> None:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.mount("/api", api)
    with TestClient(app) as client:
        assert client.get("/api/items/3").json() == {"item_id": 3}
        invalid = client.get("/api/items/three")
        openapi = client.get("/api/openapi.json")
    assert invalid.status_code == 422  # FastAPI's own validation error, untouched
    assert "/items/{item_id}" in openapi.json()["paths"]
    assert "x-request-id" in invalid.headers


def test_fastapi_lifespan_runs_and_its_state_reaches_requests(app: App) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("api up")
        yield {"greeting": "from lifespan"}
        events.append("api down")

    api = FastAPI(lifespan=lifespan)

    @api.get("/greet")
    async def greet(request: FastAPIRequest) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    app.mount("/api", api)
    with TestClient(app) as client:
        assert events == ["api up"]
        assert client.get("/api/greet").json() == {"greeting": "from lifespan"}
    assert events == ["api up", "api down"]


def test_starlette_app_mounts_unchanged(app: App) -> None:
    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path, "root": request.scope["root_path"]})

    app.mount("/legacy", Starlette(routes=[Route("/hello", hello)]))
    with TestClient(app) as client:
        response = client.get("/legacy/hello")
    assert response.json() == {"path": "/legacy/hello", "root": "/legacy"}


def test_app_without_lifespan_support_still_mounts(app: App) -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"bare"})

    app.mount("/bare", bare)
    with TestClient(app) as client:
        assert client.get("/bare/x").text == "bare"


def test_a_failing_mounted_startup_stops_the_app_starting(app: App) -> None:
    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    app.mount("/api", FastAPI(lifespan=lifespan))
    with pytest.raises(Exception, match="no database"), TestClient(app):
        pass


@pytest.mark.parametrize("path", ["/", "api", "/api/"])
def test_mount_paths_are_checked(app: App, path: str) -> None:
    with pytest.raises(ValueError):
        app.mount(path, FastAPI())
