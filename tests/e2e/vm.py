"""A fresh Debian 12 (or Ubuntu 24.04) "VM" on this machine: systemd as PID 1, a real sshd.

    with VirtualMachine.boot(tmp_path, name="deploy1") as vm:
        vm.run("systemctl is-system-running")      # over real SSH
        vm.host                                   # "root@127.0.0.1:PORT"
    with VirtualMachine.boot(tmp_path, name="deploy2", system=UBUNTU_24_04) as vm: ...

The image is made once with debootstrap (minbase, then systemd, dbus,
openssh-server, python3-venv, sudo: what a cloud VM starts from) and kept as
a tarball in CACHE_DIR; each VM unpacks it and boots it with systemd-nspawn.
The machine shares the host's network, so sshd and whatever a deploy starts
inside listen on the host's loopback: give services inside free ports.

Prerequisites (Debian packages): debootstrap, systemd-container,
openssh-client. `vm_or_skip()` skips a test with the reason when one is
missing, except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CACHE_DIR = Path(os.environ.get("SHOESTRING_TEST_CACHE", "/var/cache/shoestring-tests"))
# Bump when the recipe below changes, so a stale cached image is not reused.
IMAGE_VERSION = 2
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "ca-certificates",
    "curl",
]
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"


@dataclass(frozen=True)
class System:
    """A distribution the deploy supports, as debootstrap makes it.

    `sources` is the image's apt sources file (deb822); None copies this
    machine's Debian sources. Ubuntu's keyring is not on a Debian machine:
    its bootstrap is not checked (the test image's first packages come over
    plain HTTP), but every package apt installs afterwards is.
    """

    name: str
    suite: str
    mirror: str
    sources: str | None = None
    script: str | None = None  # debootstrap's script, when it has none named after the suite

    @property
    def image(self) -> Path:
        return CACHE_DIR / f"{self.name}-vm-v{IMAGE_VERSION}.tar"


def _debian_mirror() -> str:
    if DEBIAN_SOURCES.exists():
        for line in DEBIAN_SOURCES.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


DEBIAN_12 = System("debian12", "bookworm", _debian_mirror())
UBUNTU_24_04 = System(
    "ubuntu24.04",
    "noble",
    "http://archive.ubuntu.com/ubuntu",
    sources=f"""\
Types: deb
URIs: http://archive.ubuntu.com/ubuntu
Suites: noble noble-updates
Components: main restricted universe
Signed-By: {UBUNTU_KEYRING}

Types: deb
URIs: http://security.ubuntu.com/ubuntu
Suites: noble-security
Components: main restricted universe
Signed-By: {UBUNTU_KEYRING}
""",
    script="gutsy",  # Ubuntu's releases share one script; Debian 12's debootstrap predates noble
)
PREREQUISITES = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ssh": "openssh-client",
}


def vm_or_skip() -> None:
    """Skip (fail under CI) unless this machine can build and boot the VM."""
    missing = [package for tool, package in PREREQUISITES.items() if shutil.which(tool) is None]
    problem = ""
    if missing:
        problem = f"apt-get install {' '.join(missing)}"
    elif os.geteuid() != 0:
        problem = "run the tests as root (debootstrap and systemd-nspawn need it)"
    if not problem:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the deploy VM is required under CI: {problem}")
    pytest.skip(f"no deploy VM on this machine: {problem}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_image(system: System = DEBIAN_12) -> Path:
    """The cached image tarball, made with debootstrap the first time (about a minute)."""
    if system.image.exists():
        return system.image
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    root = CACHE_DIR / f"build-{system.name}-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    try:
        bootstrap = ["debootstrap", "--variant=minbase"]
        if system.sources is not None:
            bootstrap.append("--no-check-gpg")
        bootstrap += [system.suite, str(root), system.mirror]
        if system.script is not None:
            bootstrap.append(f"/usr/share/debootstrap/scripts/{system.script}")
        subprocess.run(
            bootstrap,
            check=True,
            capture_output=True,
            timeout=600,
        )
        sources = root / "etc/apt/sources.list.d" / f"{system.name}.sources"
        if system.sources is not None:
            sources.write_text(system.sources)
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
        elif DEBIAN_SOURCES.exists():
            shutil.copy(DEBIAN_SOURCES, sources)
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
        _copy_network_trust(root)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *BASE_PACKAGES],
            ["apt-get", "clean"],
        ):
            subprocess.run(
                ["chroot", str(root), *command],
                check=True,
                capture_output=True,
                env=env,
                timeout=600,
            )
        subprocess.run(
            ["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True
        )
        # A cloud VM has a machine id per boot of the image; nspawn makes one when empty.
        (root / "etc/machine-id").write_text("")
        partial = system.image.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".")
        partial.rename(system.image)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return system.image


def _copy_network_trust(root: Path) -> None:
    """This machine's extra CA certificates and pip settings: its network needs them.

    Egress here goes through a TLS-inspecting proxy; the VM shares the host's
    network, so it must trust the same roots to reach Debian and PyPI.
    """
    extra = Path("/usr/local/share/ca-certificates")
    if extra.is_dir():
        target = root / "usr/local/share/ca-certificates"
        target.mkdir(parents=True, exist_ok=True)
        for cert in extra.glob("*.crt"):
            shutil.copy(cert, target / cert.name)
    if Path("/etc/pip.conf").exists():
        shutil.copy("/etc/pip.conf", root / "etc/pip.conf")


class VirtualMachine:
    """One booted VM; `run` executes a command in it over SSH as root."""

    def __init__(self, directory: Path, *, name: str, system: System = DEBIAN_12) -> None:
        self.name = name
        self.system = system
        self.directory = directory
        self.root = directory / "root"
        self.key = directory / "id_ed25519"
        self.ssh_port = free_port()
        self.log_path = directory / "console.log"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def boot(
        cls, directory: Path, *, name: str = "vm1", system: System = DEBIAN_12
    ) -> Iterator[VirtualMachine]:
        vm_or_skip()
        directory.mkdir(parents=True, exist_ok=True)
        vm = cls(directory, name=name, system=system)
        vm.start()
        try:
            yield vm
        finally:
            vm.stop()

    @property
    def host(self) -> str:
        return f"root@127.0.0.1:{self.ssh_port}"

    def start(self, timeout: float = 90.0) -> None:
        image = build_image(self.system)
        self.root.mkdir()
        with tarfile.open(image) as tar:
            tar.extractall(self.root, filter="fully_trusted")  # noqa: S202 - our own image
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        # Every VM its own host keys, as a cloud VM gets at first boot.
        for old_key in (self.root / "etc/ssh").glob("ssh_host_*"):
            old_key.unlink()
        subprocess.run(["ssh-keygen", "-A", "-f", str(self.root)], check=True, capture_output=True)
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(self.key.with_suffix(".pub"), ssh_dir / "authorized_keys")
        config = self.root / "etc/ssh/sshd_config.d/test.conf"
        config.write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\n"
        )
        (self.root / "etc/hostname").write_text(self.name + "\n")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--register=no",
                "--keep-unit",
                "-q",
                "-D",
                str(self.root),
                "-M",
                self.name,
                "-b",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the VM exited at boot:\n{self.console}")
            done = self.run("systemctl is-system-running --wait", check=False, timeout=30)
            if done.stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the VM did not boot in {timeout}s:\n{self.console}")

    @property
    def console(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def ssh_command(self, command: str) -> list[str]:
        return [
            "ssh", "-p", str(self.ssh_port), "-i", str(self.key),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=5", "root@127.0.0.1", command,
        ]  # fmt: skip

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.ssh_command(command), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{command!r} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.run("systemctl poweroff", check=False, timeout=10)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
