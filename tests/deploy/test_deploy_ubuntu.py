"""`shoestring deploy` onto a fresh Ubuntu 24.04 VM: the other system the deploy supports.

The whole story runs on Debian 12 (test_deploy_vm.py); here, what differs
between the two (Python 3.12, Ubuntu's caddy from universe, its security
archive for unattended-upgrades) is proven by a deploy from nothing and a
redeploy under load.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.test_deploy_vm import (
    APP,
    SECRET,
    Load,
    Ports,
    configure,
    deployed,
    shoestring,
    site,
)
from tests.e2e.vm import UBUNTU_24_04, VirtualMachine, vm_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ubuntu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualMachine]:
    vm_or_skip()
    directory = tmp_path_factory.mktemp("ubuntu")
    with VirtualMachine.boot(directory / "vm", name="noble1", system=UBUNTU_24_04) as machine:
        yield machine


def test_deploy_and_redeploy_under_load_on_ubuntu_24_04(
    ubuntu: VirtualMachine, tmp_path: Path
) -> None:
    assert 'VERSION_ID="24.04"' in ubuntu.run("cat /etc/os-release").stdout
    project = tmp_path / "shipit"
    project.mkdir()
    (project / "app.py").write_text(APP)
    (project / "VERSION").write_text("1\n")
    (project / ".gitignore").write_text("data/\n")
    ports = Ports()
    configure(project, ubuntu, ports)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "add", "."], check=True)
    done = shoestring(project, "secrets", "set", "--deploy", "api-token", stdin=SECRET)
    assert done.returncode == 0, done.stderr

    deployed(project)
    assert httpx.get(site(ports) + "/").json() == {"version": "1"}
    assert httpx.post(site(ports) + "/notes", json={"id": "n1", "text": "hi"}).status_code == 200
    venv_python = ubuntu.run("readlink -f /srv/shipit/current/.venv/bin/python").stdout
    assert "python3.12" in venv_python  # Ubuntu's own Python, not this machine's
    assert "active" in ubuntu.run("systemctl is-active caddy").stdout
    assert "-security" in ubuntu.run("apt-config dump | grep -i origins-pattern -A3").stdout
    assert SECRET not in ubuntu.run("journalctl --no-pager -o cat", timeout=60).stdout

    (project / "VERSION").write_text("2\n")
    with Load(site(ports) + "/", threads=2) as load:
        time.sleep(1)
        deployed(project)
        time.sleep(3)  # past the drain: the old release has stopped
    assert load.failures == [], load.failures[:5]
    assert load.versions == {"1", "2"}
    assert httpx.get(site(ports) + "/").json() == {"version": "2"}
    assert httpx.get(site(ports) + "/notes").json()["files"] == {"n1": "hi"}
