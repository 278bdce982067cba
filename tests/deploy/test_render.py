"""The files deploy writes, checked by the tools that will read them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from shoestring.config import DeploySettings, Settings, SiteSettings
from shoestring.deploy import render
from shoestring.deploy.errors import DeployError
from shoestring.deploy.layout import Layout, Target


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required under CI: apt-get install {package}")
        pytest.skip(f"{tool} is not installed: apt-get install {package}")
    return path


def settings(tmp_path: Path, **deploy: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "project" / "data",
        deploy=DeploySettings(base_dir=str(tmp_path / "srv"), **deploy),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("inbound_mail", [False, True])
def test_the_unit_verifies_without_a_single_warning(tmp_path: Path, inbound_mail: bool) -> None:
    need("systemd-analyze", "systemd")
    config = settings(tmp_path, inbound_mail=inbound_mail)
    layout = Layout.of(config, "demo")
    # verify checks that ExecStart exists: give it the release's entry point.
    entry = Path(str(layout.slot(8001))) / ".venv/bin/shoestring"
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    (tmp_path / layout.unit_template).write_text(render.unit(config, layout))
    instance = tmp_path / layout.unit(8001)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
        done.stdout + done.stderr
    )
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
    exposure = security.stdout.rsplit("Overall exposure level", 1)[1]
    assert "OK" in exposure or "SAFE" in exposure, exposure


def test_with_inbound_mail_and_a_domain_the_smtp_server_gets_caddys_certificate(
    tmp_path: Path,
) -> None:
    need("systemd-analyze", "systemd")
    config = settings(tmp_path, inbound_mail=True, domains=["example.com", "mx.example.com"])
    config = config.model_copy(
        update={
            "mail": config.mail.model_copy(
                update={
                    "inbound": config.mail.inbound.model_copy(update={"hostname": "mx.example.com"})
                }
            )
        }
    )
    layout = Layout.of(config, "demo")
    assert render.mail_tls_host(config) == "mx.example.com"
    unit = render.unit(config, layout)
    assert "SHOESTRING_MAIL__INBOUND__TLS_CERT=/etc/shoestring/demo/tls/cert.pem" in unit
    files = render.mail_tls_files(config, layout)
    assert "/mx.example.com/mx.example.com.crt" in files["shoestring-demo-mail-tls.sh"]
    # root copies Caddy's key where the app cannot plant a link for it to follow.
    for text in files.values():
        assert str(layout.data_dir) not in text
    # The timer and its service, as systemd will read them.
    script = Path(str(layout.root)) / "shoestring-demo-mail-tls.sh"
    script.parent.mkdir(parents=True)
    script.write_text(files[script.name])
    for name in ("shoestring-demo-mail-tls.service", "shoestring-demo-mail-tls.timer"):
        (tmp_path / name).write_text(files[name])
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "shoestring-demo-mail-tls.timer")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr
    # Valid shell; the VM test runs it on a certificate Caddy obtained from Pebble.
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    # No domains (no certificate from Caddy), or no inbound mail: nothing of this.
    for other in (settings(tmp_path, inbound_mail=True), settings(tmp_path, domains=["a.example"])):
        assert render.mail_tls_host(other) is None
        assert "TLS_CERT" not in render.unit(other, Layout.of(other, "demo"))


def test_the_unit_sandboxes_the_app(tmp_path: Path) -> None:
    config = settings(tmp_path)
    text = render.unit(config, Layout.of(config, "demo"))
    for line in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/demo",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "User=demo",
        "CapabilityBoundingSet=\n",
    ):
        assert line in text
    assert "CAP_NET_BIND_SERVICE" not in text


def run_caddy(command: str, caddyfile: str, tmp_path: Path) -> str:
    """`caddy validate` or `caddy adapt` of `caddyfile`: its output, once it succeeded."""
    caddy = need("caddy", "caddy")
    path = tmp_path / "Caddyfile"
    path.write_text(caddyfile)
    done = subprocess.run(
        [caddy, command, "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_caddyfile_validates_with_tls_redirect_and_hsts(tmp_path: Path) -> None:
    root_ca = tmp_path / "root.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp_path / "key.pem"), "-out", str(root_ca),
         "-subj", "/CN=test root", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    config = settings(
        tmp_path,
        domains=["app.example", "www.app.example"],
        acme_email="ops@app.example",
        acme_ca="https://127.0.0.1:14000/dir",
        hsts=True,
        http_port=18080,
        https_port=18443,
        caddy_admin="127.0.0.1:12019",
    )
    config = config.model_copy(
        update={
            "sites": {
                "www": SiteSettings(root=str(tmp_path / "project" / "web")),
                "texts": SiteSettings(
                    root=str(tmp_path / "project" / "data" / "published"),
                    root_in="data",
                    path="/texts",
                ),
            }
        }
    )
    layout = Layout.of(config, "demo")
    text = render.caddyfile(config, layout, acme_ca_root=PurePosixPath(root_ca))
    assert "app.example, www.app.example {" in text
    assert f"acme_ca_root {root_ca}" in text
    assert 'Strict-Transport-Security "max-age=31536000' in text
    # Both release ports, always: Caddy's own /_ready checks pick the live one.
    assert "reverse_proxy 127.0.0.1:8001 127.0.0.1:8002 {" in text
    assert "health_uri /_ready" in text and "lb_policy first" in text
    assert "import app" in text and "shoestring-app" not in text
    assert f"root * {tmp_path}/srv/demo/current/web" in text  # served from the live release
    assert f"root * {layout.data_dir}/published" in text  # what the app writes, on the host
    run_caddy("validate", text, tmp_path)
    # Caddy redirects HTTP to HTTPS for named hosts by itself, unless told not to.
    assert "auto_https" not in text


def test_the_idle_caddyfile_serves_nothing_and_asks_no_ca(tmp_path: Path) -> None:
    config = settings(tmp_path, domains=["app.example"], caddy_admin="127.0.0.1:12019")
    adapted = json.loads(run_caddy("adapt", render.idle_caddyfile(config), tmp_path))
    assert adapted == {"admin": {"listen": "127.0.0.1:12019"}}  # no site, so no certificate


def test_without_domains_caddy_serves_plain_http_and_no_hsts(tmp_path: Path) -> None:
    config = settings(tmp_path, hsts=True, http_port=8080)
    layout = Layout.of(config, "demo")
    text = render.caddyfile(config, layout)
    assert "http://:8080 {" in text
    assert "Strict-Transport-Security" not in text


def test_the_firewall_lets_in_only_what_is_served(tmp_path: Path) -> None:
    text = render.firewall(settings(tmp_path), ssh_ports=[2222])
    assert "tcp dport { 80, 443, 2222 } accept" in text and "policy drop" in text
    with_mail = render.firewall(settings(tmp_path, inbound_mail=True), ssh_ports=[22])
    assert "tcp dport { 22, 25, 80, 443 } accept" in with_mail
    nft = need("nft", "nftables")
    path = tmp_path / "rules.nft"
    path.write_text(with_mail)
    done = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unattended_upgrades_reboot_in_the_window(tmp_path: Path) -> None:
    text = render.unattended_upgrades(settings(tmp_path, upgrades_reboot_time="03:30"))
    assert 'Automatic-Reboot "true"' in text and 'Automatic-Reboot-Time "03:30"' in text
    never = render.unattended_upgrades(settings(tmp_path, upgrades_reboot_time=""))
    assert 'Automatic-Reboot "false"' in never


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.7", Target("root", "203.0.113.7", 22)),
        ("deploy@box.example:2222", Target("deploy", "box.example", 2222)),
        ("root@[2001:db8::1]:22", Target("root", "2001:db8::1", 22)),
    ],
)
def test_hosts_parse(host: str, expected: Target) -> None:
    assert Target.parse(host) == expected


def test_no_host_says_what_to_set() -> None:
    with pytest.raises(DeployError, match=r"set `host` in \[deploy\]"):
        Target.parse("")


def test_site_roots_map_from_the_project_directory_whole_components_only(tmp_path: Path) -> None:
    project = tmp_path / "app"
    config = Settings(
        data_dir=project / "var" / "data",  # not directly under the project
        sites={
            "www": SiteSettings(root=str(project / "web")),
            "docs": SiteSettings(root=str(project / "build" / "docs"), host="docs.example"),
        },
    )
    layout = Layout.of(config, "demo")
    text = render.caddyfile(config, layout, project_dir=project)
    assert f"root * {layout.current}/web" in text
    assert f"root * {layout.current}/build/docs" in text
    # /app2/web is not inside /app, though its name starts with it.
    outside = config.model_copy(update={"sites": {"www": SiteSettings(root=f"{project}2/web")}})
    with pytest.raises(DeployError, match="outside"):
        render.caddyfile(outside, layout, project_dir=project)


def test_the_mail_certificate_script_quotes_every_path(tmp_path: Path) -> None:
    config = Settings(
        data_dir=tmp_path / "data",
        # The config refuses these; quoting holds even without its checks.
        deploy=DeploySettings(inbound_mail=True).model_copy(
            update={"base_dir": "/srv/my apps", "domains": ["mx.example;reboot"]}
        ),
    )
    layout = Layout.of(config, "demo")
    files = render.mail_tls_files(config, layout)
    assert (
        'ExecStart=/bin/sh "/srv/my apps/demo/shoestring-demo-mail-tls.sh"'
        in files["shoestring-demo-mail-tls.service"]
    )
    script = files["shoestring-demo-mail-tls.sh"]
    assert "/'mx.example;reboot'/'mx.example;reboot.crt'" in script
    assert subprocess.run(["sh", "-n"], input=script.encode()).returncode == 0
    assert '"/srv/my apps/demo/slots/%i/.venv/bin/shoestring"' in render.unit(config, layout)


def test_a_bare_ipv6_address_asks_for_brackets() -> None:
    with pytest.raises(DeployError, match=r"in brackets.*root@\[2001:db8::1\]:22"):
        Target.parse("root@2001:db8::1")
    assert Target.parse("[2001:db8::1]").address == "2001:db8::1"
