"""The files a deploy writes on the host: systemd unit, Caddyfile, firewall, upgrades.

Pure functions of the settings and the layout, so tests check them with the
real tools (`systemd-analyze verify`, `caddy validate`, `nft -c`) without a host.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePath, PurePosixPath

from shoestring.config import Settings
from shoestring.deploy.errors import DeployError
from shoestring.deploy.layout import CADDY_STORAGE, Layout
from shoestring.sites import caddy as site_caddy

HSTS = "max-age=31536000; includeSubDomains"


def unit(settings: Settings, layout: Layout) -> str:
    """The systemd template unit; instance `%i` is the port the release listens on.

    Each port has its own instance, so a new release starts beside the old
    one; `slots/<port>` says which release an instance runs. The sandbox
    leaves the app nothing writable but its data directory.
    """
    slot = layout.root / "slots" / "%i"
    stop_timeout = settings.server.shutdown_timeout + 10
    return f"""\
# Written by `shoestring deploy`; changes are overwritten on the next deploy.
[Unit]
Description=shoestring app {layout.project} on port %i
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=exec
User={layout.user}
Group={layout.user}
WorkingDirectory={slot}
Environment=SHOESTRING_DATA_DIR={layout.data_dir}
Environment=SHOESTRING_SERVER__HOST=127.0.0.1
Environment=PYTHONUNBUFFERED=1
{_mail_certificate(settings, layout)}ExecStart={_systemd_word(f"{slot}/.venv/bin/shoestring")} run {_systemd_word(str(slot))} --host 127.0.0.1 --port %i
Restart=on-failure
RestartSec=2
TimeoutStopSec={stop_timeout}
KillMode=mixed
UMask=0077

NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={layout.data_dir}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
CapabilityBoundingSet=
{_mail_capabilities(settings)}
[Install]
WantedBy=multi-user.target
"""


def mail_tls_host(settings: Settings) -> str | None:
    """The name whose certificate (Caddy's) the SMTP server offers: None without one.

    `mail.inbound.hostname` if Caddy obtains a certificate for it (it is in
    `deploy.domains`), else the first of those domains.
    """
    domains = settings.deploy.domains
    if not (settings.deploy.inbound_mail and domains):
        return None
    hostname = settings.mail.inbound.hostname
    return hostname if hostname in domains else domains[0]


def _mail_certificate(settings: Settings, layout: Layout) -> str:
    if mail_tls_host(settings) is None or settings.mail.inbound.tls_cert:
        return ""
    directory = layout.mail_tls_dir
    return (
        f"Environment=SHOESTRING_MAIL__INBOUND__TLS_CERT={directory}/cert.pem\n"
        f"Environment=SHOESTRING_MAIL__INBOUND__TLS_KEY={directory}/key.pem\n"
    )


def mail_tls_files(settings: Settings, layout: Layout) -> dict[str, str]:
    """Script, service and timer that copy Caddy's certificate for the SMTP server.

    Caddy keeps its certificates readable by its own user only; as root, this
    copies the one for `mail_tls_host` into `layout.mail_tls_dir` (root's,
    readable by the app's group: never the app's data directory, where root
    would follow a link the app planted) when it is new or renewed (every 15
    minutes, and at each deploy). The app reads the files again when they
    change, so STARTTLS never needs a restart. Every path is quoted.
    Keys are file names: the script under the project's directory, the units
    under /etc/systemd/system.
    """
    host = mail_tls_host(settings)
    assert host is not None
    name, q = layout.mail_tls, shlex.quote
    group = q(layout.user)
    cert, key = (q(str(layout.mail_tls_dir / f)) for f in ("cert.pem", "key.pem"))
    certificates = f"{q(str(CADDY_STORAGE / 'certificates'))}/*/{q(host)}/{q(host + '.crt')}"
    script = f"""\
#!/bin/sh
# Written by `shoestring deploy`: Caddy's certificate for {host}, for the SMTP server.
set -e
cert=$(ls -t {certificates} 2>/dev/null | head -n 1)
[ -n "$cert" ] || exit 0  # not issued yet: STARTTLS waits for it
key="${{cert%.crt}}.key"
install -d -m 0755 {q(str(layout.etc))}
install -d -m 0750 -o root -g {group} {q(str(layout.mail_tls_dir))}
cmp -s "$cert" {cert} && cmp -s "$key" {key} && exit 0
install -m 0640 -o root -g {group} "$key" {key}.new
install -m 0640 -o root -g {group} "$cert" {cert}.new
mv -fT {key}.new {key}
mv -fT {cert}.new {cert}
"""
    service = f"""\
# Written by `shoestring deploy`; changes are overwritten on the next deploy.
[Unit]
Description=Caddy's certificate for {host}, for {layout.project}'s SMTP server

[Service]
Type=oneshot
ExecStart=/bin/sh {_systemd_word(str(layout.root / (name + ".sh")))}
"""
    timer = f"""\
# Written by `shoestring deploy`; changes are overwritten on the next deploy.
[Unit]
Description=Copy Caddy's certificate for {host} to {layout.project}'s SMTP server

[Timer]
OnBootSec=1min
OnUnitActiveSec=15min

[Install]
WantedBy=timers.target
"""
    return {f"{name}.sh": script, f"{name}.service": service, f"{name}.timer": timer}


def _mail_capabilities(settings: Settings) -> str:
    # Port 25 is privileged; the receiving SMTP server binds it without root.
    if not settings.deploy.inbound_mail:
        return ""
    return "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"


# Caddy's own check of each release's /_ready. Every check is one access-log
# line of the app, so not more often: a deploy waits this long (plus one
# second) before the old release stops, so Caddy has seen the new one ready.
HEALTH_INTERVAL = 2
_UPSTREAM = "shoestring-app"  # placeholder the sites renderer writes; becomes `import app`


def caddyfile(
    settings: Settings,
    layout: Layout,
    *,
    project_dir: Path | None = None,
    acme_ca_root: PurePosixPath | None = None,
) -> str:
    """Caddy's whole config: global options, then the project's site.

    Both release ports are upstreams, always: Caddy sends each request to
    the first one that its own health check finds ready on /_ready, and
    retries the other when a connection is refused. A deploy therefore never
    reloads Caddy: a new release takes traffic once Caddy sees it ready, the
    old one stops after that, and open connections (websockets, HTTP/2) stay
    up. A release that never gets ready never gets a request.

    With `domains`, Caddy obtains certificates for them and redirects HTTP to
    HTTPS on its own; without, it serves plain HTTP on `http_port`. Sites
    with a directory are served by Caddy from the live release (see
    shoestring.sites.caddy); the rest goes to the app. Their roots are
    mapped from `project_dir` (default: the data directory's parent) into
    the live release.
    """
    deploy = settings.deploy
    options = [
        f"admin {deploy.caddy_admin}",
        f"http_port {deploy.http_port}",
        f"https_port {deploy.https_port}",
    ]
    if deploy.acme_email:
        options.append(f"email {deploy.acme_email}")
    if deploy.acme_ca:
        options.append(f"acme_ca {deploy.acme_ca}")
    if acme_ca_root is not None:
        options.append(f"acme_ca_root {acme_ca_root}")
    options += deploy.caddy_options
    address = ", ".join(deploy.domains) if deploy.domains else f"http://:{deploy.http_port}"
    served = _on_host(settings, layout, project_dir or settings.data_dir.parent)
    site = site_caddy.render(served, address=address, upstream=_UPSTREAM)
    site = site.replace(f"reverse_proxy {_UPSTREAM}", "import app")
    if deploy.hsts and deploy.domains:
        head, _, rest = site.partition("\n")
        site = f'{head}\n\theader Strict-Transport-Security "{HSTS}"\n{rest}'
    global_options = "\n".join(f"\t{option}" for option in options)
    upstreams = " ".join(f"127.0.0.1:{port}" for port in deploy.ports)
    snippet = f"""\
(app) {{
\treverse_proxy {upstreams} {{
\t\tlb_policy first
\t\tlb_try_duration {HEALTH_INTERVAL * 3}s
\t\tlb_try_interval 100ms
\t\tfail_duration 1s
\t\thealth_uri /_ready
\t\thealth_interval {HEALTH_INTERVAL}s
\t\thealth_timeout 2s
\t}}
}}
"""
    return f"# Written by `shoestring deploy`.\n{{\n{global_options}\n}}\n\n{snippet}\n{site}"


def idle_caddyfile(settings: Settings) -> str:
    """Caddy's config before (and after) the project: its admin API, no site.

    Caddy starts with this when its package is installed, so it neither
    serves its default page nor asks a CA for certificates before a restored
    certificate storage is in place.
    """
    return f"# Written by `shoestring deploy`.\n{{\n\tadmin {settings.deploy.caddy_admin}\n}}\n"


def _on_host(settings: Settings, layout: Layout, project_dir: Path) -> Settings:
    """The settings as the host sees them: its data directory, sites in the live release."""
    sites = {}
    for name, site in settings.sites.items():
        root = site.root
        if root and site.root_in == "data":
            root = str(layout.data_dir / _inside(root, settings.data_dir, name))
        elif root:
            root = str(layout.current / _inside(root, project_dir, name))
        sites[name] = site.model_copy(update={"root": root})
    return settings.model_copy(update={"data_dir": layout.data_dir, "sites": sites})


def _inside(root: str, directory: Path, site: str) -> PurePosixPath:
    """`root` relative to `directory` (whole path components only); DeployError if outside."""
    try:
        return PurePosixPath(PurePath(root).relative_to(directory).as_posix())
    except ValueError:
        raise DeployError(
            f"site {site!r}: its root {root} is outside {directory}, so it is not in the "
            "release the host serves: put it inside the project (or the data directory)"
        ) from None


def _systemd_word(path: str) -> str:
    # systemd splits ExecStart= on spaces; double quotes keep a path whole.
    return f'"{path}"' if any(c.isspace() for c in path) else path


def firewall(settings: Settings, *, ssh_ports: list[int]) -> str:
    """An nftables ruleset: inbound SSH (on the ports sshd listens on), HTTP, HTTPS
    (and SMTP) only; outbound free."""
    deploy = settings.deploy
    ports = sorted(
        {*ssh_ports, deploy.http_port, deploy.https_port} | ({25} if deploy.inbound_mail else set())
    )
    allowed = ", ".join(str(port) for port in ports)
    return f"""\
#!/usr/sbin/nft -f
# Written by `shoestring deploy`.
flush ruleset

table inet filter {{
\tchain input {{
\t\ttype filter hook input priority 0; policy drop;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tiif "lo" accept
\t\tip protocol icmp accept
\t\tip6 nexthdr ipv6-icmp accept
\t\ttcp dport {{ {allowed} }} accept
\t}}
\tchain forward {{
\t\ttype filter hook forward priority 0; policy drop;
\t}}
\tchain output {{
\t\ttype filter hook output priority 0; policy accept;
\t}}
}}
"""


def unattended_upgrades(settings: Settings) -> str:
    """apt settings: daily security updates, reboots only at the chosen time."""
    reboot = settings.deploy.upgrades_reboot_time
    lines = [
        "// Written by `shoestring deploy`.",
        'APT::Periodic::Update-Package-Lists "1";',
        'APT::Periodic::Unattended-Upgrade "1";',
        'APT::Periodic::AutocleanInterval "7";',
        "Unattended-Upgrade::Origins-Pattern {",
        '\t"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";',
        '\t"origin=Debian,codename=${distro_codename},label=Debian-Security";',
        '\t"origin=Ubuntu,archive=${distro_codename}-security";',
        "};",
        'Unattended-Upgrade::Remove-Unused-Dependencies "true";',
        f'Unattended-Upgrade::Automatic-Reboot "{"true" if reboot else "false"}";',
    ]
    if reboot:
        lines.append(f'Unattended-Upgrade::Automatic-Reboot-Time "{reboot}";')
    return "\n".join(lines) + "\n"
