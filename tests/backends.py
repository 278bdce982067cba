"""Database backends for tests: a SQLite file, and a fresh schema on the real PostgreSQL.

PostgreSQL tests skip with the reason when no server answers, except under
CI (`CI=true`), where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from shoestring import App, Settings
from shoestring.config import DatabaseSettings

POSTGRES_URL = os.environ.get(
    "SHOESTRING_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_or_skip() -> str:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({exc}); set SHOESTRING_TEST_POSTGRES")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for each backend; a PostgreSQL schema of its own, dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """For what only PostgreSQL does (several processes claiming in parallel)."""
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema() -> Iterator[str]:
    import psycopg

    base = postgres_or_skip()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def make_app(database_url: str, tmp_path: Path, name: str = "tabletest", **settings: object) -> App:
    return App(
        name,
        settings=Settings(
            data_dir=tmp_path / "data", database=DatabaseSettings(url=database_url), **settings
        ),  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    """Start the app's services (no HTTP), stop them after."""
    await app.services.start_all()
    try:
        yield app
    finally:
        await app.services.stop_all()
