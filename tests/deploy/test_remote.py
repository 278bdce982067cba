"""What a deploy runs on the host, recorded by a fake host (no VM needed)."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from pathlib import Path

import pytest

from shoestring.cli.deploy import _destroy
from shoestring.config import DeploySettings, Settings, load_settings
from shoestring.deploy.backup import Manifest, create_backup
from shoestring.deploy.errors import DeployError, RestoreRefused
from shoestring.deploy.layout import Layout
from shoestring.deploy.vault import DeploySecrets
from tests.deploy.conftest import FakeHost, fake_deployment

SSHD_ON_2222 = {"sshd -T": (b"2222\n", "", 0)}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "app.py").write_text("")
    (directory / "shoestring.toml").write_text(
        '[project]\nname = "demo"\n[deploy]\nhost = "root@203.0.113.7"\n'
        'domains = ["mx.example"]\ninbound_mail = true\n'
    )
    return directory


def test_root_never_writes_inside_the_apps_data_directory(project: Path, tmp_path: Path) -> None:
    settings = load_settings(project)
    DeploySecrets.of(settings, "demo").set("api-token", "v1")
    deployment, host = fake_deployment(project, settings, SSHD_ON_2222)

    async def steps() -> None:
        await deployment.provision()
        await deployment.restore("r1", tmp_path / "b.tar.gz", Manifest("demo", time.time()))
        await deployment.deliver_secrets()

    asyncio.run(steps())
    data = str(deployment.layout.data_dir)
    # A compromised app may have put links anywhere in there; root follows
    # none of them: it only names the data directory itself (or deletes: rm
    # does not follow links).
    for command in host.as_root():
        if not command.startswith("rm "):
            assert f"{data}/" not in command, command
    provision = next(c for c in host.as_root() if "useradd" in c)
    assert "is a symbolic link: refusing" in provision and "chown -h" in provision
    as_app = [c for c, user in host.commands if user == "demo"]
    assert any(f"mkdir -p {data}/secrets" in c for c in as_app)
    written = [c for c in as_app if f"{data}/secrets/api-token" in c]
    assert written and host.stdin[written[0]] == b"v1"


def test_the_firewall_keeps_the_port_sshd_listens_on(project: Path) -> None:
    settings = load_settings(project)
    deployment, host = fake_deployment(project, settings, SSHD_ON_2222)
    asyncio.run(deployment.provision())
    rules = host.sent_to("/etc/nftables.conf").decode()
    assert "tcp dport { 25, 80, 443, 2222 } accept" in rules  # not 22, the port dialled


def test_the_release_tarball_goes_up_readable_by_root_only(project: Path) -> None:
    deployment, host = fake_deployment(project, load_settings(project))
    asyncio.run(deployment.upload_release())
    [(remote, mode, as_user)] = host.uploads
    assert remote.parent == deployment.layout.incoming and mode == 0o600 and as_user is None


def test_paths_with_spaces_stay_one_word(project: Path) -> None:
    settings = load_settings(project)
    settings = settings.model_copy(
        update={"deploy": settings.deploy.model_copy(update={"base_dir": "/srv/my apps"})}
    )
    deployment, host = fake_deployment(project, settings, SSHD_ON_2222)
    asyncio.run(deployment.provision())
    root = "/srv/my apps/demo"
    for command in host.as_root():
        if "/srv/my" in command:
            words = shlex.split(re.sub(r"[;&|]+", " ", command))
            assert any(w.startswith(root) for w in words), command
            assert "/srv/my" not in words, command


@pytest.mark.parametrize(
    ("project_name", "user", "setting"),
    [
        ("caddy", "", r"`name` in \[project\]"),
        ("Postgres", "", r"`name` in \[project\]"),
        ("demo", "www-data", r"`user` in \[deploy\]"),
        ("demo", "root", r"`user` in \[deploy\]"),
    ],
)
def test_names_the_system_uses_are_refused(project_name: str, user: str, setting: str) -> None:
    settings = Settings(deploy=DeploySettings().model_copy(update={"user": user}))
    with pytest.raises(DeployError, match=setting):
        Layout.of(settings, project_name)


def _destroy_on(project: Path, created: bytes | None, provisioned: bool = True) -> FakeHost:
    settings = load_settings(project)
    answers: dict[str, tuple[bytes, str, int]] = {}
    if created is not None:
        answers["/.created"] = (created, "", 0)
    if not provisioned:
        answers["/.provisioned"] = (b"", "", 1)
    deployment, host = fake_deployment(project, settings, answers)
    asyncio.run(_destroy(deployment))
    return host


def test_destroy_removes_only_what_provisioning_made(project: Path) -> None:
    everything = " ".join(_destroy_on(project, b"user\ndata\n").as_root())
    assert "userdel demo" in everything and "rm -rf /srv/demo" in everything
    assert "/var/lib/demo " in everything and "/etc/shoestring/demo" in everything
    # A user and a data directory that were there before shoestring: left alone.
    before = " ".join(_destroy_on(project, b"").as_root())
    assert "userdel" not in before and "/var/lib/demo" not in before
    assert "rm -rf /srv/demo" in before


def test_destroy_refuses_a_directory_deploy_did_not_make(project: Path) -> None:
    with pytest.raises(DeployError, match="not made by `shoestring deploy`"):
        _destroy_on(project, None, provisioned=False)


def test_provisioning_records_what_it_made(project: Path) -> None:
    deployment, host = fake_deployment(project, load_settings(project), SSHD_ON_2222)
    asyncio.run(deployment.provision())
    command = next(c for c in host.as_root() if "useradd" in c)
    assert "echo user >> /srv/demo/.created" in command
    assert "mkdir -m 0700 /var/lib/demo && echo data >> /srv/demo/.created" in command


def test_deploy_restore_refuses_another_projects_backup(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "other-data"
    (data / "secrets").mkdir(parents=True)
    create_backup(data, tmp_path / "other.tar.gz", project="other")
    deployment, host = fake_deployment(project, load_settings(project))
    with pytest.raises(RestoreRefused, match="a backup of 'other', not of 'demo'"):
        asyncio.run(deployment.deploy(restore=tmp_path / "other.tar.gz"))
    assert host.commands == []  # refused before the host changed
