from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient

from shoestring import App, Health, Settings
from shoestring.services import ServiceRegistry


class Recorder:
    """A service that records its lifecycle into a shared list."""

    def __init__(self, name: str, events: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail_start = fail_start
        self.healthy = True

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")

    async def health(self) -> Health:
        return Health(ok=self.healthy, detail="" if self.healthy else "disk full")


def test_services_start_in_order_and_stop_in_reverse(settings: Settings) -> None:
    events: list[str] = []
    app = App("svc", settings=settings)
    app.services.add(Recorder("cache", events))
    app.services.add(Recorder("search", events))

    @app.on_startup
    async def hook() -> None:
        events.append("hook")

    with TestClient(app):
        events.append("serving")
    assert events == ["start cache", "start search", "hook", "serving", "stop search", "stop cache"]


def test_failed_start_stops_the_services_already_started(settings: Settings) -> None:
    events: list[str] = []
    app = App("svc", settings=settings)
    app.services.add(Recorder("cache", events))
    app.services.add(Recorder("mail", events, fail_start=True))
    with pytest.raises(RuntimeError, match="mail cannot start"), TestClient(app):
        pass
    assert events == ["start cache", "stop cache"]


def test_ready_reports_each_service_and_turns_503_when_one_fails(settings: Settings) -> None:
    app = App("svc", settings=settings)
    storage = app.services.add(Recorder("storage", []))
    app.services.add(Recorder("tables", []))
    with TestClient(app) as client:
        ready = client.get("/_ready")
        storage.healthy = False
        not_ready = client.get("/_ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert not_ready.status_code == 503
    assert not_ready.json()["services"]["storage"] == {"ok": False, "detail": "disk full"}
    assert not_ready.json()["services"]["tables"]["ok"] is True


def test_a_hanging_health_check_counts_as_not_ready(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shoestring.services.HEALTH_TIMEOUT", 0.05)

    class Hanging(Recorder):
        async def health(self) -> Health:
            await asyncio.sleep(10)
            return Health(ok=True)

    app = App("svc", settings=settings)
    app.services.add(Hanging("slow", []))
    with TestClient(app) as client:
        response = client.get("/_ready")
    assert response.status_code == 503
    assert "health check took over" in response.json()["services"]["slow"]["detail"]


def test_registry_refuses_duplicates_and_non_services() -> None:
    registry = ServiceRegistry()
    registry.add(Recorder("cache", []))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Recorder("cache", []))
    with pytest.raises(TypeError, match="not a Service"):
        registry.add(object())  # type: ignore[type-var]


def test_require_creates_a_service_once() -> None:
    registry = ServiceRegistry()
    created: list[Recorder] = []

    def make() -> Recorder:
        created.append(Recorder("storage", []))
        return created[-1]

    first = registry.require("storage", make)
    second = registry.require("storage", make)
    assert first is second is created[0]
    assert len(created) == 1
    assert "storage" in registry
