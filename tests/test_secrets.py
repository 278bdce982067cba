"""app.secrets: private files outside git and the database, or the environment."""

from __future__ import annotations

import hashlib
import hmac
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shoestring import App
from shoestring.secrets import SecretError, Secrets


def test_ensure_makes_a_private_secret_once_and_keeps_it(app: App) -> None:
    first = app.secrets.ensure("hmac-key")
    assert len(first) >= 40  # 32 random bytes, URL-safe base64
    assert app.secrets.ensure("hmac-key") == first
    path = app.settings.data_dir / "secrets" / "hmac-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert Secrets(path.parent).get("hmac-key") == first  # another process reads the same


def test_racing_processes_agree_on_one_value(tmp_path: Path) -> None:
    with ThreadPoolExecutor(16) as pool:
        values = set(pool.map(lambda _: Secrets(tmp_path).ensure("shared"), range(64)))
    assert len(values) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no temporary files left


def test_the_environment_wins_and_set_replaces(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.secrets.set("api-token", "from-file\n")
    assert app.secrets.get("api-token") == "from-file"
    app.secrets.set("api-token", "rotated")
    assert app.secrets.get("api-token") == "rotated"
    monkeypatch.setenv("SHOESTRING_SECRET_API_TOKEN", "from-env")
    assert app.secrets.get("api-token") == "from-env"
    assert app.secrets.names() == ["api-token"]
    assert app.secrets.delete("api-token") and not app.secrets.delete("api-token")


def test_a_missing_secret_says_how_to_set_it(app: App) -> None:
    with pytest.raises(
        SecretError, match=r"shoestring secrets set smtp-password.*SHOESTRING_SECRET_SMTP_PASSWORD"
    ):
        app.secrets.get("smtp-password")
    assert app.secrets.find("smtp-password") is None


@pytest.mark.parametrize("name", ["../escape", "a/b", "UPPER", "", ".hidden", "x" * 65])
def test_names_cannot_leave_the_directory(app: App, name: str) -> None:
    with pytest.raises(SecretError, match="cannot be a secret name"):
        app.secrets.set(name, "value")
    assert not (app.settings.data_dir / "secrets").exists() or app.secrets.names() == []


def test_nodes_creating_the_storage_key_file_at_once_share_one_key(tmp_path: Path) -> None:
    from shoestring.storage.credentials import load_or_create_fernet_key

    path = tmp_path / "shared" / "storage-secret.key"
    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: load_or_create_fernet_key(path), range(64)))
    assert keys == {path.read_bytes()}
    assert len(path.read_bytes()) == 44  # a whole Fernet key, never a half-written one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["storage-secret.key"]


def test_keyed_hash_is_an_hmac_under_the_ensured_secret(app: App) -> None:
    stored = app.secrets.keyed_hash("hmac-key", "address", "ada@example.com")
    key = app.secrets.ensure("hmac-key").encode()
    assert stored == hmac.new(key, b"address\0ada@example.com", hashlib.sha256).hexdigest()
    # the parts are kept apart, and another process with the same secret agrees
    assert app.secrets.keyed_hash("hmac-key", "addressada@example.com") != stored
    other = Secrets(app.settings.data_dir / "secrets")
    assert other.keyed_hash("hmac-key", "address", "ada@example.com") == stored
