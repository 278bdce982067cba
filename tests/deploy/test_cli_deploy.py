"""The deploy commands document themselves and fail with what to do."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoestring.cli import main
from shoestring.deploy.vault import DeploySecrets
from shoestring.secrets import SecretError

runner = CliRunner()
COMMANDS = ["deploy", "rollback", "releases", "logs", "status", "ssh", "destroy", "backup",
            "restore", "migrate"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_documents_itself(command: str) -> None:
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and "--project" in result.output
    assert command in runner.invoke(main, ["--help"]).output


@pytest.mark.parametrize("command", ["deploy", "status", "releases", "logs", "destroy"])
def test_without_a_host_the_error_says_what_to_set(command: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    result = runner.invoke(main, [command, "--project", str(tmp_path)], input="demo\n")
    assert result.exit_code == 1
    assert "set `host` in [deploy]" in result.output
    assert "connecting to" not in result.output and "Type the project name" not in result.output


def test_an_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text(
        f'[deploy]\nhost = "root@127.0.0.1:1"\nknown_hosts = "{tmp_path}/known"\n'
    )
    result = runner.invoke(main, ["status", "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot connect to root@127.0.0.1:1" in result.output


def test_deploy_secrets_are_encrypted_and_apart_from_the_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    project = tmp_path / "proj"
    project.mkdir()
    (project / "app.py").write_text("")
    result = runner.invoke(
        main, ["secrets", "set", "--deploy", "api-token", "--project", str(project)], input="v1"
    )
    assert result.exit_code == 0, result.output
    stored = (project / "data" / "deploy-secrets" / "api-token").read_text()
    assert "v1" not in stored and stored.startswith("gAAAAA")  # a Fernet token
    key = tmp_path / "config" / "shoestring" / "deploy-keys" / "proj.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (project / "data" / "secrets").exists()
    listed = runner.invoke(main, ["secrets", "ls", "--deploy", "--project", str(project)])
    assert listed.output.split() == ["api-token"]
    assert DeploySecrets(project / "data" / "deploy-secrets", key).get("api-token") == "v1"
    key.unlink()
    with pytest.raises(SecretError, match="set each again"):
        DeploySecrets(project / "data" / "deploy-secrets", key).get("api-token")


def test_destroy_asks_for_the_name(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text('[project]\nname = "demo"\n[deploy]\nhost = "h"\n')
    result = runner.invoke(main, ["destroy", "--project", str(tmp_path)], input="nope\n")
    assert result.exit_code == 1
    assert "nothing was destroyed" in result.output


def test_a_lost_key_is_not_silently_replaced(tmp_path: Path) -> None:
    key = tmp_path / "config" / "proj.key"
    store = DeploySecrets(tmp_path / "deploy-secrets", key)
    store.set("api-token", "v1")
    key.unlink()
    with pytest.raises(SecretError, match="copy the key back"):
        store.set("other", "v2")
    assert not key.exists() and store.names() == ["api-token"]
    store.delete("api-token")
    store.set("other", "v2")  # nothing left that the old key opened: a new key is fine
    assert store.get("other") == "v2"


def test_destroy_with_nothing_to_back_up_points_at_no_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoestring.deploy import remote
    from shoestring.deploy.errors import NothingToBackUp

    async def nothing(*args: object) -> Path:
        raise NothingToBackUp("the host's data directory is empty: there is nothing to back up")

    monkeypatch.setattr(remote, "remote_backup", nothing)
    (tmp_path / "shoestring.toml").write_text('[project]\nname = "demo"\n[deploy]\nhost = "h"\n')
    result = runner.invoke(main, ["destroy", "--project", str(tmp_path)], input="demo\ny\n")
    assert result.exit_code == 1
    assert "shoestring destroy --no-backup" in result.output
    assert "Nothing was destroyed" in result.output
