from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shoestring import App, Settings
from tests.backends import database_url, postgres_url  # noqa: F401 - fixtures
from tests.e2e.caddy import caddy, caddy_binary  # noqa: F401 - fixtures
from tests.e2e.conftest import project, start  # noqa: F401 - fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the data dir in a temporary directory."""
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> App:
    return App("testapp", settings=settings)


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    """A client for `app`, with its lifespan (services, hooks) running."""
    with TestClient(app) as client:
        yield client
