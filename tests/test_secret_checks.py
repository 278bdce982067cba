"""Secrets that `app.secrets.ensure` makes must agree across every process sharing the database."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from shoestring import App, Settings
from shoestring.config import DatabaseSettings
from shoestring.secret_checks import SecretChecks
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.anyio


def node(database_url: str, data_dir: Path) -> App:
    return App(
        "fleet", settings=Settings(data_dir=data_dir, database=DatabaseSettings(url=database_url))
    )


async def use_secret(app: App) -> tuple[str, bool, str]:
    """Start `app`, let it use its HMAC key; the key, whether it is ready, and `/_ready`'s detail."""
    async with app.running(mounted=False):
        value = app.secrets.ensure("hmac-key")
        checks = app.services.get("secrets")
        assert isinstance(checks, SecretChecks)
        await checks.settled()
        health = await checks.health()
    return value, health.ok, health.detail


async def test_a_node_with_another_value_is_not_ready_until_it_has_the_same(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, ok, _ = await use_secret(node(database_url, tmp_path / "a"))
    assert ok
    assert await use_secret(node(database_url, tmp_path / "a")) == (first, True, "")  # restarts

    with caplog.at_level(logging.ERROR, logger="shoestring.secrets"):
        second, ok, detail = await use_secret(node(database_url, tmp_path / "b"))
    assert second != first
    assert not ok and "hmac-key" in detail
    assert "copy <data_dir>/secrets/hmac-key" in caplog.text
    assert second not in caplog.text and first not in caplog.text  # never a value

    # Given the first node's secrets directory, the second agrees.
    shutil.rmtree(tmp_path / "b" / "secrets")
    shutil.copytree(tmp_path / "a" / "secrets", tmp_path / "b" / "secrets")
    assert await use_secret(node(database_url, tmp_path / "b")) == (first, True, "")


async def test_a_secret_replaced_on_purpose_is_recorded_afresh(
    database_url: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shoestring.toml").write_text(f'[database]\nurl = "{database_url}"\n')
    data_dir = project / "data"
    original, ok, _ = await use_secret(node(database_url, data_dir))
    assert ok and original != "rotated-value"

    result = run_cli(project, "secrets", "set", "hmac-key", stdin="rotated-value\n")
    assert result.returncode == 0, result.stderr
    assert await use_secret(node(database_url, data_dir)) == ("rotated-value", True, "")
    # The rotated value is now the one every node must have.
    _, ok, detail = await use_secret(node(database_url, tmp_path / "other"))
    assert not ok and "hmac-key" in detail


async def test_a_secret_used_before_the_app_runs_is_checked_when_it_starts(
    database_url: str, tmp_path: Path
) -> None:
    first, ok, _ = await use_secret(node(database_url, tmp_path / "a"))
    assert ok
    other = node(database_url, tmp_path / "b")
    value = other.secrets.ensure("hmac-key")  # at import time, as `KEY = ...` would
    async with other.running(mounted=False):
        checks = other.services.get("secrets")
        assert isinstance(checks, SecretChecks)
        await checks.settled()
        health = await checks.health()
    assert value != first
    assert not health.ok and "hmac-key" in health.detail
