"""Where a deployed project lives on its host, and how to reach the host.

<base_dir>/<project>/
    releases/<id>/          the project's files, its venv in venv/ (root-owned, read-only)
    slots/<port>            -> releases/<id>: what the unit on that port runs
    current                 -> releases/<id>: the release taking traffic
    state.json              which port is live, release history
    .provisioned            the packages installed (a hash), written once provisioned
    .created                what provisioning made (`user`, `data`): all destroy removes
    backups/                a backup before every switch (0700)
    incoming/               uploads in progress
/var/lib/<project>/         the data directory (owned by the app's user, 0700)
    secrets/<name>          0600, the app's user only (written as that user)
/etc/shoestring/<project>/tls/   with inbound_mail: Caddy's certificate for the MX name,
                            copied by root (root:<user>, 0640): outside the data directory,
                            so root never writes where the app could plant a link
/etc/systemd/system/shoestring-<project>@.service   one instance per port
/etc/caddy/Caddyfile
/var/lib/caddy/.local/share/caddy/   Caddy's certificates and ACME account (user caddy)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shoestring.config import DeploySettings, Settings
from shoestring.deploy.errors import DeployError

# Debian's caddy package runs Caddy as the user caddy, home /var/lib/caddy, and
# Caddy keeps its data in $HOME/.local/share/caddy when XDG_DATA_HOME is unset.
CADDY_USER = "caddy"
CADDY_STORAGE = PurePosixPath("/var/lib/caddy/.local/share/caddy")

_PROJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_HOST = re.compile(r"^(?:(?P<user>[^@]+)@)?(?P<address>\[[^\]]+\]|[^:]+)(?::(?P<port>\d+))?$")
# Users and /var/lib directories of the system and its common packages: a
# project or `deploy.user` named like one would take over (chown) and, on
# destroy, delete what they own.
_RESERVED = " ".join(
    [
        "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc",
        "gnats nobody nogroup systemd systemd-network systemd-resolve systemd-timesync",
        "systemd-journal systemd-coredump messagebus syslog sshd ssh _apt apt dpkg polkitd",
        "caddy postgres postgresql mysql redis nginx apache2 docker containerd ubuntu debian",
        "admin adm sudo staff users shadow tty disk kmem dialout cdrom floppy audio video",
        "plugdev netdev dip operator ntp chrony tss uuidd tcpdump dnsmasq lxd snapd landscape",
        "pollinate fwupd-refresh usbmux avahi colord geoclue cups lightdm gdm rtkit ucf misc",
        "dbus cloud-init unattended-upgrades nftables",
    ]
)
RESERVED_NAMES = frozenset(_RESERVED.split())


@dataclass(frozen=True)
class Target:
    """`user@address:port` from `[deploy] host`."""

    user: str
    address: str
    port: int

    @classmethod
    def parse(cls, host: str) -> Target:
        address = host.rpartition("@")[2]
        if address.count(":") > 1 and not address.startswith("["):
            raise DeployError(
                f"the deploy host {host!r} looks like an IPv6 address: put it in brackets, "
                f'with the port if not 22: host = "root@[2001:db8::1]:22"'
            )
        match = _HOST.match(host)
        if not host or match is None:
            raise DeployError(
                "no deploy host: set `host` in [deploy] of shoestring.toml, e.g. "
                '`host = "root@203.0.113.7"`, or SHOESTRING_DEPLOY__HOST'
            )
        return cls(
            user=match["user"] or "root",
            address=match["address"].strip("[]"),
            port=int(match["port"] or 22),
        )

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Layout:
    """The paths and names of one project on its host."""

    project: str
    user: str
    root: PurePosixPath
    data_dir: PurePosixPath

    @classmethod
    def of(cls, settings: Settings, project: str) -> Layout:
        deploy: DeploySettings = settings.deploy
        if not _PROJECT.match(project):
            raise DeployError(
                f"{project!r} cannot name a deployed project (it names a user, a unit and "
                "directories): set `name` in [project] to letters, digits, '-' and '_'"
            )
        if project.lower() in RESERVED_NAMES:
            raise DeployError(
                f"the project name {project!r} is a name the system uses (its user and "
                f"/var/lib/{project} would be taken over): set another `name` in [project]"
            )
        user = deploy.user or _system_name(project)
        if user in RESERVED_NAMES:
            setting = "`user` in [deploy]" if deploy.user else "`name` in [project]"
            raise DeployError(
                f"the app's user would be {user!r}, a user the system uses: set {setting} "
                "to a name of the app's own"
            )
        return cls(
            project=project,
            user=user,
            root=PurePosixPath(deploy.base_dir) / project,
            data_dir=PurePosixPath("/var/lib") / project,
        )

    @property
    def releases(self) -> PurePosixPath:
        return self.root / "releases"

    def release(self, release_id: str) -> PurePosixPath:
        return self.releases / release_id

    def venv(self, environment: str) -> PurePosixPath:
        return self.root / "venvs" / environment

    def slot(self, port: int) -> PurePosixPath:
        return self.root / "slots" / str(port)

    @property
    def current(self) -> PurePosixPath:
        return self.root / "current"

    @property
    def state_file(self) -> PurePosixPath:
        return self.root / "state.json"

    @property
    def created(self) -> PurePosixPath:
        """What provisioning made, one per line (`user`, `data`): what destroy may remove."""
        return self.root / ".created"

    @property
    def backups(self) -> PurePosixPath:
        return self.root / "backups"

    @property
    def incoming(self) -> PurePosixPath:
        return self.root / "incoming"

    @property
    def pip_cache(self) -> PurePosixPath:
        return PurePosixPath("/var/cache/shoestring") / self.project / "pip"

    @property
    def unit_template(self) -> str:
        return f"shoestring-{self.project}@.service"

    def unit(self, port: int) -> str:
        return f"shoestring-{self.project}@{port}.service"

    @property
    def mail_tls(self) -> str:
        """The name of the units that copy Caddy's certificate for the SMTP server."""
        return f"shoestring-{self.project}-mail-tls"

    @property
    def etc(self) -> PurePosixPath:
        """Root's files the app may read but not change (ProtectSystem makes /etc read-only)."""
        return PurePosixPath("/etc/shoestring") / self.project

    @property
    def mail_tls_dir(self) -> PurePosixPath:
        return self.etc / "tls"

    @property
    def caddy_root_ca(self) -> PurePosixPath:
        return PurePosixPath("/etc/caddy") / f"{self.project}-acme-ca-root.pem"


def deploy_secrets_dir(settings: Settings) -> Path:
    """Where `shoestring secrets set --deploy` keeps, on this machine, values meant for the host."""
    return settings.data_dir / "deploy-secrets"


def _system_name(project: str) -> str:
    name = re.sub(r"[^a-z0-9_-]", "-", project.lower()).lstrip("-0123456789") or "app"
    return name[:32]
