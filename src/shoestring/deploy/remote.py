"""What `shoestring deploy` does on the host, step by step.

    provision   packages (caddy, python3-venv, unattended-upgrades, nftables),
                the app's user, directories, the unit, firewall, upgrades
    upload      the release tarball, unpacked into releases/<id> with its own venv
    restore     with --restore: the data and Caddy's certificate storage
    caddy       the Caddyfile, loaded if it changed
    secrets     `shoestring secrets set --deploy` values into <data>/secrets/, 0600,
                written by the app's user (see Deployment.deliver_secrets)
    backup      the data directory, before anything can change it
    migrate     `shoestring migrate` from the new release
    start       the new release on the port the live one does not use
    ready       /_ready answers 200, or the new release is stopped and we say why
    switch      the release is live; Caddy, which checks both ports' /_ready
                itself, sends it traffic (no reload: see render.caddyfile)
    drain       the old release finishes its requests, then stops

Every step is idempotent, so a deploy that failed half-way is simply run again.

root never writes, creates or changes anything inside the data directory:
the app owns it, and a compromised app could plant a symbolic link there
(`secrets -> /etc/systemd/system`) that root would follow. What goes in
there is written by the app's user (`as_user`); what root must own and the
app only read (the SMTP server's certificate copy) lives under /etc/shoestring/.
Every path and value in a command is quoted (`_q`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import secrets
import shlex
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from shoestring.config import Settings
from shoestring.deploy import package, render
from shoestring.deploy.backup import Manifest, add_caddy_storage, read_manifest
from shoestring.deploy.errors import (
    DeployError,
    HealthCheckFailed,
    NothingToBackUp,
    RestoreRefused,
)
from shoestring.deploy.layout import CADDY_STORAGE, CADDY_USER, Layout, Target
from shoestring.deploy.ssh import Host, connect
from shoestring.deploy.vault import DeploySecrets

PROVISION_VERSION = 1
BASE_PACKAGES = [
    "caddy",
    "python3-venv",
    "unattended-upgrades",
    "nftables",
    "curl",
    "ca-certificates",
]
CADDYFILE = PurePosixPath("/etc/caddy/Caddyfile")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
APT_OPTIONS = '-y -q -o Dpkg::Options::="--force-confdef" -o Dpkg::Options::="--force-confold"'


def _q(value: object) -> str:
    """`value` as one shell word."""
    return shlex.quote(str(value))


class Reporter(Protocol):
    """How progress reaches the person deploying (rich in the CLI)."""

    def step(self, title: str) -> contextlib.AbstractContextManager[None]: ...

    def note(self, text: str) -> None: ...


@dataclass
class State:
    """`state.json` on the host: which release serves, on which port, and the history."""

    live: str | None = None
    live_port: int | None = None
    history: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: bytes | None) -> State:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            live=data.get("live"), live_port=data.get("live_port"), history=data.get("history", [])
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {"live": self.live, "live_port": self.live_port, "history": self.history}, indent=1
        ).encode()


class Deployment:
    """One project on one host: the operations the CLI commands call."""

    def __init__(
        self, host: Host, settings: Settings, layout: Layout, project_dir: Path, report: Reporter
    ) -> None:
        self.host = host
        self.settings = settings
        self.layout = layout
        self.project_dir = project_dir
        self.report = report

    def local_path(self, name: str) -> Path:
        """A path from the settings, relative to the project directory."""
        return self.project_dir / Path(name).expanduser()

    @property
    def user(self) -> str:
        return self.layout.user

    def app_env(self) -> dict[str, str]:
        return {"SHOESTRING_DATA_DIR": str(self.layout.data_dir), "HOME": str(self.layout.data_dir)}

    async def state(self) -> State:
        return State.parse(await self.host.read_file(self.layout.state_file))

    async def save_state(self, state: State) -> None:
        await self.host.write_file(self.layout.state_file, state.to_json(), mode=0o644)

    # -- provisioning ---------------------------------------------------------

    async def provision(self) -> None:
        deploy = self.settings.deploy
        layout = self.layout
        packages = sorted({*BASE_PACKAGES, *deploy.packages})
        marker = layout.root / ".provisioned"
        wanted = hashlib.sha256(json.dumps([PROVISION_VERSION, packages]).encode()).hexdigest()
        done = (await self.host.read_file(marker) or b"").decode().strip()
        if done != wanted:
            with self.report.step("installing Debian packages (" + ", ".join(packages) + ")"):
                # Our Caddyfile goes first: Caddy then never starts on its default site.
                if await self.host.read_file(CADDYFILE) is None:
                    config = render.idle_caddyfile(self.settings)
                    await self.host.write_file(CADDYFILE, config.encode())
                await self.host.run("apt-get update -q", env=APT_ENV)
                await self.host.run(
                    f"apt-get install {APT_OPTIONS} {' '.join(map(shlex.quote, packages))}",
                    env=APT_ENV,
                )
        with self.report.step(f"user {self.user}, directories, unit, upgrades, firewall"):
            await self.host.run(_provision_directories(layout))
            await self.make_app_directories()
            unit = render.unit(self.settings, layout).encode()
            await self.host.write_file(
                PurePosixPath("/etc/systemd/system") / layout.unit_template, unit
            )
            await self.install_mail_tls()
            await self.host.run("systemctl daemon-reload")
            await self.host.write_file(
                PurePosixPath("/etc/apt/apt.conf.d/52shoestring-upgrades"),
                render.unattended_upgrades(self.settings).encode(),
            )
            if deploy.firewall:
                rules = render.firewall(self.settings, ssh_ports=await self.ssh_ports())
                await self.host.write_file(
                    PurePosixPath("/etc/nftables.conf"), rules.encode(), mode=0o755
                )
                await self.host.run(
                    "nft -c -f /etc/nftables.conf && systemctl enable --now nftables "
                    "&& systemctl reload nftables"
                )
            if deploy.acme_ca_root:
                await self.host.upload(self.local_path(deploy.acme_ca_root), layout.caddy_root_ca)
        await self.host.write_file(marker, wanted.encode())

    async def make_app_directories(self) -> None:
        """The directories the app writes in its data directory, made by the app's user.

        Also after a restore, whose backup may lack them.
        """
        await self.host.run(
            f"umask 077 && mkdir -p {_q(self.layout.data_dir / 'secrets')}", as_user=self.user
        )

    async def ssh_ports(self) -> list[int]:
        """The ports sshd listens on (`sshd -T`), which the firewall must keep open.

        Not the port this connection came in on: behind a NAT or a port
        forward, that is a port of some other machine.
        """
        listed = await self.host.run("sshd -T 2>/dev/null | awk '$1 == \"port\" {print $2}'")
        ports = sorted({int(word) for word in listed.stdout.split() if word.isdigit()})
        if not ports:
            raise DeployError(
                "cannot tell which port sshd listens on (`sshd -T` printed none), so the "
                "firewall could lock you out: set firewall = false in [deploy], or fix sshd"
            )
        return ports

    async def install_mail_tls(self) -> None:
        """With inbound mail and domains, the timer that gives the app Caddy's certificate."""
        units = PurePosixPath("/etc/systemd/system")
        name = self.layout.mail_tls
        if render.mail_tls_host(self.settings) is None:
            await self.host.run(
                f"systemctl disable --now {name}.timer 2>/dev/null; "
                f"rm -f {units}/{name}.service {units}/{name}.timer "
                f"{_q(self.layout.root / (name + '.sh'))}; rm -rf {_q(self.layout.mail_tls_dir)}",
                check=False,
            )
            return
        for file, text in render.mail_tls_files(self.settings, self.layout).items():
            directory = self.layout.root if file.endswith(".sh") else units
            await self.host.write_file(directory / file, text.encode(), mode=0o644)
        await self.host.run(f"systemctl daemon-reload && systemctl enable --now {name}.timer")

    async def copy_mail_certificate(self) -> None:
        """Copy Caddy's certificate for the SMTP server now, if it has one already."""
        if render.mail_tls_host(self.settings) is not None:
            await self.host.run(f"systemctl start {self.layout.mail_tls}.service")

    # -- a release ------------------------------------------------------------

    async def upload_release(self) -> str:
        with tempfile.TemporaryDirectory(prefix="shoestring-release-") as workdir:
            with self.report.step("packaging the project"):
                built = package.build(self.project_dir, self.settings.data_dir, Path(workdir))
                self.report.note(
                    f"release {built.release_id}: {built.files} files, "
                    f"{built.path.stat().st_size / 1024:.0f} KB"
                )
            with self.report.step("uploading"):
                remote = self.layout.incoming / built.path.name
                await self.host.upload(built.path, remote, mode=0o600)
        release = self.layout.release(built.release_id)
        venv = self.layout.venv(built.environment)
        with self.report.step("unpacking into " + str(release)):
            await self.host.run(
                f"rm -rf {_q(release)} && install -d -m 0755 {_q(release)} && "
                f"tar -xzf {_q(remote)} -C {_q(release)} --no-same-owner && rm -f {_q(remote)} && "
                f"ln -sfn {_q(venv)} {_q(release / '.venv')} && chmod -R go-w {_q(release)}"
            )
        ready = await self.host.run(f"test -e {_q(venv / '.complete')}", check=False)
        if ready.status == 0:
            self.report.note(f"dependencies unchanged: reusing {venv}")
            return built.release_id
        with self.report.step(f"installing dependencies into {venv}"):
            await self.host.run(
                f"rm -rf {_q(venv)} && python3 -m venv {_q(venv)} && "
                f"cd {_q(release / package.RELEASE_DIR)} && "
                f"{_q(venv / 'bin/pip')} install -q --disable-pip-version-check "
                f"--cache-dir {_q(self.layout.pip_cache)} -c constraints.txt -r requirements.txt "
                f"&& chmod -R go-w {_q(venv)} && touch {_q(venv / '.complete')}",
                time_limit=1200,
            )
        return built.release_id

    async def deliver_secrets(self) -> None:
        """Write each deploy secret into <data>/secrets/, 0600, as the app's user.

        As that user, not root: the directory is the app's, and root would
        follow a symbolic link the app put there.
        """
        store = DeploySecrets.of(self.settings, self.layout.project)
        names = store.names()
        if not names:
            return
        with self.report.step(f"secrets ({', '.join(names)})"):
            for name in names:
                value = store.get(name)
                await self.host.write_file(
                    self.layout.data_dir / "secrets" / name,
                    value.encode(),
                    mode=0o600,
                    as_user=self.user,
                )

    async def backup(self, release: str, *, label: str) -> PurePosixPath | None:
        """Back up the data directory with the release's shoestring; None when there is no data."""
        empty = await self.host.run(
            f"test -n \"$(ls -A {_q(self.layout.data_dir)} | grep -v '^secrets$')\"", check=False
        )
        if empty.status != 0:
            return None
        target = self.layout.backups / f"{label}.backup.tar.gz"
        with self.report.step(f"backing up the data to {target}"):
            directory = self.layout.release(release)
            await self.host.run(
                f"{_q(directory / '.venv/bin/shoestring')} backup "
                f"--project {_q(directory)} --to {_q(target)}",
                as_user=self.user,
                env=self.app_env(),
                time_limit=None,  # as long as the data takes to copy
            )
            keep = self.settings.deploy.keep_releases
            await self.host.run(
                f"ls -1t {_q(self.layout.backups)}/*.backup.tar.gz | tail -n +{keep + 1} "
                "| xargs -r -d '\\n' rm -f"
            )
        return target

    async def migrate(self, release: str) -> None:
        directory = self.layout.release(release)
        with self.report.step("migrating the database"):
            await self.host.run(
                f"cd {_q(directory)} && .venv/bin/shoestring migrate --project .",
                as_user=self.user,
                env=self.app_env(),
            )

    async def run_hooks(self, release: str, commands: list[str], when: str) -> None:
        for command in commands:
            with self.report.step(f"{when}: {command}"):
                await self.host.run(
                    f"cd {_q(self.layout.release(release))} && {command}",
                    as_user=self.user,
                    env=self.app_env(),
                )

    async def start_beside(self, release: str, state: State) -> int:
        """Start `release` on the port the live release is not on; return that port."""
        first, second = self.settings.deploy.ports
        port = second if state.live_port == first else first
        unit = self.layout.unit(port)
        with self.report.step(f"starting {release} on port {port}"):
            started = await self.host.run(
                f"systemctl stop {unit}; ln -sfn {_q(self.layout.release(release))} "
                f"{_q(self.layout.slot(port))} && systemctl reset-failed {unit} 2>/dev/null; "
                f"date +%s && systemctl start {unit}"
            )
        with self.report.step(f"waiting for http://127.0.0.1:{port}/_ready"):
            await self.wait_ready(port, since=started.stdout.split()[-1])
        if self.settings.deploy.inbound_mail:
            with self.report.step("checking that it receives mail on port 25"):
                await self.check_receives_mail(release, port)
        return port

    async def check_receives_mail(self, release: str, port: int) -> None:
        """With `deploy.inbound_mail`, the release must listen on port 25, which the firewall opens.

        Its settings on the host may differ from this machine's (environment,
        settings kept as deploy secrets), so the host is asked: does a process
        of the release's unit (its cgroup says) hold a socket listening on port 25?
        """
        unit = self.layout.unit(port)
        probe = await self.host.run(
            "for inode in $(awk '$2 ~ /:0019$/ && $4 == \"0A\" {print $10}' "
            "/proc/net/tcp /proc/net/tcp6 2>/dev/null); do "
            'for fd in $(find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\\[$inode\\]" 2>/dev/null); do '
            "pid=${fd#/proc/}; pid=${pid%%/*}; "
            f'grep -qF "/{unit}" /proc/$pid/cgroup && {{ echo listening; exit 0; }}; '
            "done; done; true",
            check=False,
        )
        if "listening" in probe.stdout:
            return
        await self.host.run(f"systemctl stop {unit}", check=False)
        raise DeployError(
            f"deploy.inbound_mail opens port 25, but release {release} does not listen on it, "
            "so mail sent to your domains would be refused. Set [mail.inbound] enabled = true, "
            'host = "0.0.0.0" and port = 25 in shoestring.toml (or keep them as deploy secrets, '
            "e.g. SHOESTRING_MAIL__INBOUND__PORT), then deploy again; the old release still serves"
        )

    async def wait_ready(self, port: int, *, since: str) -> None:
        """Poll /_ready on `port`; HealthCheckFailed with the log since `since` (epoch s)."""
        unit = self.layout.unit(port)
        deadline = time.monotonic() + self.settings.deploy.health_timeout
        answer = ""
        while time.monotonic() < deadline:
            probe = await self.host.run(
                f"curl -sS -m 5 -w '\\n%{{http_code}}' http://127.0.0.1:{port}/_ready", check=False
            )
            body, _, code = probe.stdout.rpartition("\n")
            if code.strip() == "200":
                return
            answer = (
                f"/_ready answered {code.strip()}: {body.strip()[:500]}"
                if code.strip() not in ("", "000")
                else probe.stderr.strip()
            )
            # A crash makes systemd restart it (Restart=on-failure): one restart
            # is enough to know the release cannot start.
            shown = await self.host.run(
                f"systemctl show -p ActiveState -p NRestarts {unit}", check=False
            )
            unit_state = dict(line.partition("=")[::2] for line in shown.stdout.split())
            restarted = unit_state.get("NRestarts", "0") not in ("", "0")
            if restarted or unit_state.get("ActiveState") in ("failed", "inactive"):
                break
            await asyncio.sleep(0.5)
        journal = await self.host.run(
            f"journalctl -u {unit} --since @{since} -n 40 --no-pager -o cat", check=False
        )
        await self.host.run(f"systemctl stop {unit}", check=False)
        raise HealthCheckFailed(
            f"the new release on port {port} never became ready ({answer or 'no answer'}); "
            f"it was stopped and the old release still serves. Its last log lines:\n"
            f"{journal.stdout.strip()[-4000:]}\nFix the cause, then deploy again."
        )

    async def configure_caddy(self) -> None:
        """Write the Caddyfile and load it through the admin API, if it changed."""
        caddy_root = self.layout.caddy_root_ca if self.settings.deploy.acme_ca_root else None
        config = render.caddyfile(
            self.settings, self.layout, project_dir=self.project_dir, acme_ca_root=caddy_root
        ).encode()
        running = await self.host.run("systemctl is-active caddy", check=False)
        if await self.host.read_file(CADDYFILE) == config and running.status == 0:
            return
        with self.report.step("configuring Caddy"):
            await self.host.write_file(CADDYFILE, config)
            # `caddy reload` posts the config to the admin API: graceful, requests
            # in flight finish. Only settings changes get here, never a release.
            reload = await self.host.run(
                f"caddy reload --config {CADDYFILE} --adapter caddyfile "
                f"--address {shlex.quote(self.settings.deploy.caddy_admin)}",
                check=False,
            )
            if reload.status != 0:
                # Caddy is down, or its admin address changed in the settings.
                await self.host.run("systemctl enable caddy && systemctl restart caddy")

    async def switch(self, release: str, port: int, state: State) -> None:
        """Make `release` (ready on `port`) the live one; stop the old one once Caddy sees it.

        Caddy routes by its own readiness checks (see render.caddyfile), so the
        switch is: mark the release live, give Caddy a health interval to see
        it ready, then stop the old release, which finishes its requests first.
        """
        with self.report.step(f"making {release} live"):
            await self.host.run(
                f"ln -sfn {_q(self.layout.release(release))} {_q(self.layout.current)} && "
                f"systemctl enable {self.layout.unit(port)} 2>/dev/null"
            )
            old_port = state.live_port
            state.live, state.live_port = release, port
            state.history = [r for r in state.history if r != release] + [release]
            await self.save_state(state)
        if old_port is None or old_port == port:
            return
        old = self.layout.unit(old_port)
        wait = max(self.settings.deploy.drain_seconds, render.HEALTH_INTERVAL + 1)
        with self.report.step(f"moving traffic, then stopping the old release on port {old_port}"):
            await asyncio.sleep(wait)
            await self.host.run(f"systemctl disable --now {old} 2>/dev/null; true")

    async def prune(self, state: State) -> None:
        keep = self.settings.deploy.keep_releases
        listed = await self.host.run(f"ls -1 {_q(self.layout.releases)}")
        releases = sorted(listed.stdout.split())
        kept = set(state.history[-keep:]) | {state.live or ""}
        old = [r for r in releases[:-keep] if r not in kept]
        if old:
            with self.report.step(f"removing {len(old)} old release(s)"):
                paths = " ".join(_q(self.layout.release(r)) for r in old)
                await self.host.run(f"rm -rf {paths}")
        state.history = [r for r in state.history if r not in old]
        await self.save_state(state)
        # Venvs no remaining release links to.
        venvs = self.layout.root / "venvs"
        await self.host.run(
            f"cd {_q(venvs)} && used=$(readlink {_q(self.layout.releases)}/*/.venv "
            "| xargs -rn1 basename) "
            '&& for v in *; do echo "$used" | grep -qx "$v" || rm -rf "$v"; done',
            check=False,
        )

    async def sites(self, *args: str, build_dir: Path | None = None) -> str:
        """`shoestring sites ARGS` in the live release, as the app's user; what it printed.

        With `build_dir`, that directory is sent first (a tarball over SSH),
        unpacked into the data directory for the app's user, and passed as the
        last argument; it is removed again afterwards, whatever happens.
        """
        if (await self.state()).live is None:
            raise DeployError("nothing is deployed on the host yet: run `shoestring deploy` first")
        staging = self.layout.data_dir / f".site-upload-{secrets.token_hex(6)}"
        remote = self.layout.incoming / f"{staging.name}.tar.gz"
        try:
            if build_dir is not None:
                await self._send_directory(build_dir, remote, staging)
                args = (*args, str(staging))
            with self.report.step("shoestring sites " + " ".join(args)):
                done = await self.host.run(
                    f"cd {_q(self.layout.current)} && "
                    f".venv/bin/shoestring sites {shlex.join(args)} --project .",
                    as_user=self.user,
                    env=self.app_env(),
                )
        finally:
            await self.host.run(f"rm -rf {_q(staging)} {_q(remote)}", check=False)
        return done.stdout

    async def _send_directory(
        self, directory: Path, remote: PurePosixPath, target: PurePosixPath
    ) -> None:
        """Copy `directory` to `target` on the host, owned by the app's user (0700).

        Unpacked by the app's user: `target` is in its data directory.
        """
        with tempfile.TemporaryDirectory(prefix="shoestring-site-") as workdir:
            archive = Path(workdir) / "site.tar.gz"
            with self.report.step(f"packing {directory}"):
                await asyncio.to_thread(_pack_directory, directory, archive)
            with self.report.step(f"uploading {archive.stat().st_size / 1024:.0f} KB"):
                await self.host.upload(archive, remote)
        await self.host.run(
            f"umask 077 && mkdir {_q(target)} && tar -xzf {_q(remote)} -C {_q(target)} "
            "--no-same-owner --no-same-permissions",
            as_user=self.user,
        )

    async def deploy(self, *, restore: Path | None = None, force: bool = False) -> str:
        """Deploy the project; with `restore`, onto a new host from that backup.

        A backup of another project is refused unless `force`.
        """
        # A file that is no backup, or another project's, is refused before the host changes.
        backup = await asyncio.to_thread(read_manifest, restore) if restore else None
        if backup is not None and backup.project != self.layout.project and not force:
            raise RestoreRefused(
                f"{restore} is a backup of {backup.project!r}, not of {self.layout.project!r}: "
                "deploy --restore it from that project, or add --force if this is meant"
            )
        await self.provision()
        state = await self.state()
        if restore is not None and state.live is not None:
            raise DeployError(
                f"the host already serves release {state.live}: --restore is for a new host. "
                "Run `shoestring destroy` first, or restore on the host by hand"
            )
        release = await self.upload_release()
        if restore is not None and backup is not None:
            await self.restore(release, restore, backup)
        # After the restore: Caddy finds its certificates instead of asking the CA again.
        await self.configure_caddy()
        await self.copy_mail_certificate()
        await self.deliver_secrets()
        await self.backup(release, label=f"before-{release}")
        await self.migrate(release)
        await self.run_hooks(release, self.settings.deploy.pre_deploy, "pre-deploy")
        port = await self.start_beside(release, state)
        await self.switch(release, port, state)
        await self.run_hooks(release, self.settings.deploy.post_deploy, "post-deploy")
        await self.prune(state)
        return release

    async def restore(self, release: str, archive: Path, backup: Manifest) -> None:
        """Put the backup's data (and Caddy's storage, if it holds it) on the host."""
        remote = self.layout.incoming / "restore.backup.tar.gz"
        with self.report.step(f"uploading the backup {archive.name}"):
            await self.host.upload(archive, remote, mode=0o600)
        data, directory = self.layout.data_dir, self.layout.release(release)
        caddy = f"--caddy-storage {_q(CADDY_STORAGE)} " if backup.caddy else ""
        # chown -R does not follow symbolic links (-P); the tree is the backup's
        # regular files anyway, unpacked by root beside the data directory.
        command = (
            f"{_q(directory / '.venv/bin/shoestring')} restore --project {_q(directory)} "
            f"--force {caddy}{_q(remote)} && rm -f {_q(remote)} && "
            f"rm -rf {_q(data)}.before-restore-* && "
            f"chown -R {_q(self.user)}:{_q(self.user)} {_q(data)} && chmod 0700 {_q(data)}"
        )
        title = "restoring the data"
        if backup.caddy:
            # Caddy stays stopped until configure_caddy starts it on the restored storage.
            owner = f"{CADDY_USER}:{CADDY_USER}"
            command = (
                f"systemctl stop caddy && {command} && chown -R {owner} {_q(CADDY_STORAGE)} && "
                f"chown {owner} {_q(CADDY_STORAGE.parent)} {_q(CADDY_STORAGE.parent.parent)}"
            )
            title += f" and Caddy's certificate storage ({len(backup.caddy)} files)"
        with self.report.step(title):
            await self.host.run(command, env=self.app_env(), time_limit=None)
            # A backup without secrets/ (none set yet) leaves the app no place to write one.
            await self.make_app_directories()

    async def caddy_storage(self) -> bytes:
        """Caddy's certificate storage as a tar stream, read as root; empty before Caddy made it."""
        storage = _q(CADDY_STORAGE)
        return await self.host.output(f"if [ -d {storage} ]; then tar -C {storage} -cf - .; fi")

    async def rollback(self, release: str | None) -> str:
        state = await self.state()
        listed = (await self.host.run(f"ls -1 {_q(self.layout.releases)}")).stdout.split()
        if release is None:
            earlier = [r for r in state.history if r != state.live and r in listed]
            if not earlier:
                raise DeployError(
                    "there is no earlier release to roll back to (`shoestring releases` lists them)"
                )
            release = earlier[-1]
        if release not in listed:
            raise DeployError(
                f"no release {release!r} on the host; `shoestring releases` lists them"
            )
        if release == state.live:
            raise DeployError(f"{release} is already the live release")
        port = await self.start_beside(release, state)
        await self.switch(release, port, state)
        return release


@contextlib.asynccontextmanager
async def deployment(
    settings: Settings, project_dir: Path, project: str, report: Reporter
) -> AsyncIterator[Deployment]:
    """An SSH connection to the host, as the Deployment of `project` (see Deployment)."""
    Target.parse(settings.deploy.host)  # no host: say so before any step shows
    async with contextlib.AsyncExitStack() as stack:
        with report.step(f"connecting to {settings.deploy.host}"):
            host = await stack.enter_async_context(
                connect(
                    settings.deploy,
                    on_new_key=lambda f: report.note(f"new host key {f} trusted and recorded"),
                )
            )
        yield Deployment(host, settings, Layout.of(settings, project), project_dir, report)


async def remote_backup(
    settings: Settings, project_dir: Path, project: str, target: Path, report: Reporter
) -> Path:
    async with deployment(settings, project_dir, project, report) as remote:
        state = await remote.state()
        if state.live is None:
            raise NothingToBackUp(
                "nothing is deployed on the host yet: there is nothing to back up"
            )
        label = f"{project}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = await remote.backup(state.live, label=label)
        if path is None:
            raise NothingToBackUp("the host's data directory is empty: there is nothing to back up")
        with report.step(f"downloading to {target}"):
            storage = await remote.caddy_storage()
            # As the app's user: the backups directory is the app's to write.
            if not storage:
                await remote.host.download(path, target, as_user=remote.user)
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".shoestring-", dir=target.parent) as workdir:
                data = Path(workdir, "data.backup.tar.gz")
                await remote.host.download(path, data, as_user=remote.user)
                manifest = await asyncio.to_thread(
                    add_caddy_storage, data, io.BytesIO(storage), target
                )
        report.note(f"with Caddy's certificate storage ({len(manifest.caddy)} files)")
    return target


def _provision_directories(layout: Layout) -> str:
    """The shell command making the user and the directories, recording what it made.

    `layout.created` lists what this made (`user`, `data`), so that `destroy`
    removes nothing it did not make: a user or a /var/lib directory that was
    there before is left alone. A host provisioned before that file existed
    is recognised by the user's home being the data directory.
    """
    user, data, created = _q(layout.user), _q(layout.data_dir), _q(layout.created)
    root_dirs = [layout.root, layout.releases, layout.root / "slots", layout.root / "venvs"]
    return (
        f"install -d -m 0755 {' '.join(map(_q, [*root_dirs, layout.incoming, layout.pip_cache]))}"
        f" && if [ ! -e {created} ] && [ -e {_q(layout.root / '.provisioned')} ] && "
        f'[ "$(getent passwd {user} | cut -d: -f6)" = {data} ]; then '
        f"printf 'user\\ndata\\n' > {created}; fi"
        f" && if ! id -u {user} >/dev/null 2>&1; then useradd --system --user-group "
        f"--home-dir {data} --no-create-home --shell /usr/sbin/nologin {user} && "
        f"echo user >> {created}; fi"
        f" && if [ -L {data} ]; then echo {_q(f'{layout.data_dir} is a symbolic link: refusing')}"
        " >&2; exit 1; fi"
        f" && if [ ! -e {data} ]; then mkdir -m 0700 {data} && echo data >> {created}; fi"
        f" && install -d -m 0700 {_q(layout.backups)}"
        f" && chown -h {user}:{user} {data} {_q(layout.backups)} && chmod 0700 {data}"
        f" && touch {created}"
    )


def _pack_directory(directory: Path, archive: Path) -> None:
    """`directory`'s files (not symbolic links) as a gzip'd tarball, paths relative to it."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
