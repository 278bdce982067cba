"""`shoestring deploy` for real: a fresh Debian 12 VM (systemd, sshd), Caddy, Pebble.

One VM serves the whole story in order: deploy from nothing, redeploy under
load with zero failed requests, a release that fails its health check never
takes traffic, rollback, destroy with a final backup; then a second, fresh
VM gets everything back with `deploy --restore` (Caddy's storage included),
behind HTTPS from Pebble.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shoestring.deploy.backup import read_manifest
from tests.e2e.conftest import SHOESTRING
from tests.e2e.pebble import Pebble, pebble_or_skip, served_certificate
from tests.e2e.vm import VirtualMachine, free_port, vm_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CERT_SECONDS = 45  # Pebble's certificate lifetime in the HTTPS test
# An ACME account key of a CA the first VM used, in Caddy's storage (Debian's caddy package).
ACCOUNT = (
    "/var/lib/caddy/.local/share/caddy/acme/ca.example-directory/users/ops@shipit.test/ops.key"
)
ACCOUNT_KEY = "account-key-" + hashlib.sha256(os.urandom(8)).hexdigest()[:12]
MAIL_TLS = "shoestring-shipit-mail-tls"
SECRET = "tok_" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]

APP = """\
import hashlib
from pathlib import Path

from shoestring import App, Request

app = App("shipit")
notes = app.table("notes", key="id")
files = app.storage.bucket("files")
VERSION = (Path(__file__).parent / "VERSION").read_text().strip()

if VERSION == "broken":

    @app.on_startup
    async def refuse() -> None:
        raise RuntimeError("release refuses to start: no PAYMENT_URL configured")


@app.route("/")
async def home(request: Request) -> dict[str, str]:
    return {"version": VERSION}


@app.route("/notes", methods=["POST"])
async def add(request: Request) -> dict[str, bool]:
    note = await request.json()
    await notes.put(note)
    await files.put(note["id"] + ".txt", note["text"].encode())
    return {"ok": True}


@app.route("/notes")
async def listing(request: Request) -> dict[str, object]:
    items = (await notes.scan(limit=1000)).items
    bodies = {i["id"]: (await files.read(i["id"] + ".txt")).decode() for i in items}
    return {"notes": sorted(items, key=lambda i: i["id"]), "files": bodies}


@app.route("/secret")
async def secret(request: Request) -> dict[str, str]:
    value = app.secrets.get("api-token")
    return {"sha256": hashlib.sha256(value.encode()).hexdigest()}
"""


@dataclass
class Ports:
    http: int = field(default_factory=free_port)
    https: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    apps: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))


def configure(project: Path, vm: VirtualMachine, ports: Ports, extra: str = "") -> None:
    (project / "shoestring.toml").write_text(
        f"""[project]
name = "shipit"

[deploy]
host = "{vm.host}"
ssh_key = "{vm.key}"
known_hosts = "{project.parent / "known_hosts"}"
http_port = {ports.http}
https_port = {ports.https}
caddy_admin = "127.0.0.1:{ports.admin}"
ports = [{ports.apps[0]}, {ports.apps[1]}]
drain_seconds = 3
health_timeout = 20
# The VM shares this machine's network namespace: its ruleset would be ours.
firewall = false
{extra}"""
    )


def shoestring(
    project: Path, *args: str, stdin: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SHOESTRING, *args, "--project", str(project)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "COLUMNS": "200",
            "XDG_DATA_HOME": str(project.parent / "xdg"),
            "XDG_CONFIG_HOME": str(project.parent / "config"),
        },
    )
    assert SECRET not in done.stdout + done.stderr
    return done


def deployed(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = shoestring(project, "deploy", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


class ProcessWatch:
    """Looks at every process's arguments (VM included: its PIDs are ours too) for the secret."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.seen += [line for line in listing.splitlines() if SECRET in line]
            time.sleep(0.05)


class Load:
    """Steady requests through Caddy from a few threads; counts every failure."""

    def __init__(self, url: str, *, threads: int = 4) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                        self.versions.add(response.json()["version"])
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vm_or_skip()
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def vm(workdir: Path) -> Iterator[VirtualMachine]:
    with VirtualMachine.boot(workdir / "vm1", name="shipit1") as machine:
        yield machine


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def project(workdir: Path, vm: VirtualMachine, ports: Ports) -> Path:
    directory = workdir / "shipit"
    directory.mkdir()
    (directory / "app.py").write_text(APP)
    (directory / "VERSION").write_text("1\n")
    (directory / ".gitignore").write_text("data/\n")
    configure(directory, vm, ports)
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    subprocess.run(["git", "-C", str(directory), "add", "."], check=True)
    done = shoestring(directory, "secrets", "set", "--deploy", "api-token", stdin=SECRET)
    assert done.returncode == 0, done.stderr
    return directory


def site(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.http}"


def test_deploy_from_nothing(project: Path, vm: VirtualMachine, ports: Ports) -> None:
    started = time.monotonic()
    with ProcessWatch() as watch:
        done = deployed(project)
    print(f"\nfirst deploy (provisioning included): {time.monotonic() - started:.1f}s")
    assert watch.seen == []
    for step in ("installing Debian packages", "migrating", "waiting for", "live"):
        assert step in done.stderr
    assert httpx.get(site(ports) + "/").json() == {"version": "1"}
    # The secret reached the app, as a file only its user reads.
    expected = hashlib.sha256(SECRET.encode()).hexdigest()
    assert httpx.get(site(ports) + "/secret").json() == {"sha256": expected}
    mode = vm.run("stat -c '%a %U' /var/lib/shipit/secrets/api-token").stdout.split()
    assert mode == ["600", "shipit"]
    assert SECRET not in vm.run("journalctl --no-pager -o cat", timeout=60).stdout
    unit = vm.run("systemctl cat shoestring-shipit@.service").stdout
    assert "ProtectSystem=strict" in unit and "User=shipit" in unit
    assert "active" in vm.run("systemctl is-active caddy").stdout
    upgrades = vm.run("cat /etc/apt/apt.conf.d/52shoestring-upgrades").stdout
    assert 'Automatic-Reboot-Time "04:00"' in upgrades


def test_redeploy_under_load_fails_no_request(project: Path, ports: Ports) -> None:
    for i in range(5):
        response = httpx.post(site(ports) + "/notes", json={"id": f"n{i}", "text": f"note {i}"})
        assert response.status_code == 200
    (project / "VERSION").write_text("2\n")
    started = time.monotonic()
    with Load(site(ports) + "/", threads=2) as load:
        time.sleep(1)
        done = deployed(project)
        time.sleep(3)  # past the drain: the old release has stopped
    print(
        f"\nredeploy: {time.monotonic() - started - 4:.1f}s, {load.ok} requests, failed: {len(load.failures)}"
    )
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100 and load.versions == {"1", "2"}
    assert "stopping the old release" in done.stderr
    assert "configuring Caddy" not in done.stderr  # a release never reloads Caddy
    assert httpx.get(site(ports) + "/").json() == {"version": "2"}
    assert len(httpx.get(site(ports) + "/notes").json()["notes"]) == 5


def test_a_release_failing_its_health_check_never_takes_traffic(
    project: Path, ports: Ports
) -> None:
    (project / "VERSION").write_text("broken\n")
    with Load(site(ports) + "/", threads=2) as load:
        done = shoestring(project, "deploy")
    assert done.returncode == 1
    assert "never became ready" in done.stderr
    assert "old release still serves" in done.stderr
    assert "no PAYMENT_URL configured" in done.stderr  # why, from the release's own log
    assert load.failures == [] and load.versions == {"2"}
    assert httpx.get(site(ports) + "/").json() == {"version": "2"}


def test_rollback_and_releases(project: Path, ports: Ports) -> None:
    listed = shoestring(project, "releases")
    assert listed.returncode == 0, listed.stderr
    live = [line.split()[0] for line in listed.stdout.splitlines() if "live" in line]
    assert len(live) == 1
    done = shoestring(project, "rollback")
    assert done.returncode == 0, done.stderr
    assert httpx.get(site(ports) + "/").json() == {"version": "1"}
    assert len(httpx.get(site(ports) + "/notes").json()["notes"]) == 5  # data untouched
    done = shoestring(project, "rollback", live[0])
    assert done.returncode == 0, done.stderr
    assert httpx.get(site(ports) + "/").json() == {"version": "2"}


def test_status_and_logs(project: Path) -> None:
    status = shoestring(project, "status")
    assert status.returncode == 0, status.stderr
    assert re.search(r"health\s+ready", status.stdout), status.stdout
    assert "security updates pending" in status.stdout
    logs = shoestring(project, "logs", "--grep", "PAYMENT_URL")
    assert logs.returncode == 0, logs.stderr
    assert "no PAYMENT_URL configured" in logs.stdout  # the failed release's log is there too


def test_sites_published_from_here_are_served_by_the_host(
    project: Path, vm: VirtualMachine, ports: Ports, tmp_path: Path
) -> None:
    configure(project, vm, ports, extra='\n[sites.docs]\npath = "/docs"\n')
    (project / "VERSION").write_text("3\n")
    deployed(project)  # a release that knows the site
    build = tmp_path / "build"
    (build / "guide").mkdir(parents=True)
    for version in ("1", "2"):
        (build / "index.html").write_text(f"<h1>docs {version}</h1>")
        (build / "guide" / "index.html").write_text(f"<p>guide {version}</p>")
        done = shoestring(project, "sites", "publish", "docs", str(build), "--deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "is live" in done.stdout
        assert f"docs {version}" in httpx.get(site(ports) + "/docs/").text
        assert f"guide {version}" in httpx.get(site(ports) + "/docs/guide/").text
    listed = shoestring(project, "sites", "ls", "docs", "--deploy")
    assert listed.returncode == 0, listed.stderr
    assert len(set(re.findall(r"\d{8}T\d{6}\.\d{3}-[0-9a-f]{4}", listed.stdout))) == 2
    rolled = shoestring(project, "sites", "rollback", "docs", "--deploy")
    assert rolled.returncode == 0, rolled.stderr
    assert "docs 1" in httpx.get(site(ports) + "/docs/").text
    # The upload was unpacked for the app's user only, and is gone.
    assert ".site-upload" not in vm.run("ls -A /var/lib/shipit").stdout


def test_receiving_mail_needs_a_release_listening_on_port_25(
    project: Path, vm: VirtualMachine, ports: Ports
) -> None:
    configure(project, vm, ports, extra="inbound_mail = true\n")
    refused = shoestring(project, "deploy")
    assert refused.returncode == 1
    assert "does not listen on it" in refused.stderr
    assert "the old release still serves" in refused.stderr
    assert httpx.get(site(ports) + "/").json() == {"version": "3"}
    configure(
        project, vm, ports,
        extra='inbound_mail = true\n\n[mail.inbound]\nenabled = true\nhost = "0.0.0.0"\n'
        'port = 25\ndomains = ["shipit.test"]\n',
    )  # fmt: skip
    done = deployed(project)
    assert "receives mail on port 25" in done.stderr
    # The VM shares this machine's network: its SMTP server answers here.
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as client:
        code, _ = client.ehlo("sender.example")
        assert code == 250
        client.mail("sender@elsewhere.example")
        assert client.rcpt("someone@elsewhere.example")[0] == 550  # never a relay


def test_destroy_then_deploy_restore_on_a_new_vm_with_https(
    project: Path, vm: VirtualMachine, workdir: Path, ports: Ports
) -> None:
    pebble_or_skip()
    before = httpx.get(site(ports) + "/notes").json()
    vm.run(
        f"runuser -u caddy -- sh -c 'umask 077 && mkdir -p {os.path.dirname(ACCOUNT)} && "
        f"printf %s {ACCOUNT_KEY} > {ACCOUNT}'"
    )
    refused = shoestring(project, "destroy", stdin="wrong-name\n")
    assert refused.returncode == 1 and "nothing was destroyed" in refused.stderr
    done = shoestring(project, "destroy", stdin="shipit\ny\n")
    assert done.returncode == 0, done.stdout + done.stderr
    backup = Path(done.stdout.strip().splitlines()[-1])
    assert backup.exists()
    assert any(entry.path.endswith("/ops.key") for entry in read_manifest(backup).caddy)
    assert vm.run("test -e /var/lib/shipit || test -e /srv/shipit", check=False).returncode == 1
    assert vm.run("id shipit", check=False).returncode != 0
    vm.stop()

    with (
        Pebble.start(workdir / "pebble", validity=CERT_SECONDS) as pebble,
        VirtualMachine.boot(workdir / "vm2", name="shipit2") as fresh,
    ):
        tls = Ports()
        configure(
            project,
            fresh,
            tls,
            extra=f'domains = ["shipit.test"]\nacme_ca = "{pebble.directory_url}"\n'
            f'acme_ca_root = "{pebble.api_root}"\nacme_email = "ops@shipit.test"\nhsts = true\n'
            # Caddy looks for certificates to renew every 10 minutes; here, often.
            'caddy_options = ["renew_interval 5s"]\ninbound_mail = true\n\n'
            '[mail.inbound]\nenabled = true\nhost = "0.0.0.0"\nport = 25\n'
            'domains = ["shipit.test"]\nhostname = "shipit.test"\n',
        )
        (project / "VERSION").write_text("2\n")  # the code that was live
        started = time.monotonic()
        restored = deployed(project, "--restore", str(backup))
        print(f"\ndeploy --restore on a new VM: {time.monotonic() - started:.1f}s")
        assert "Caddy's certificate storage" in restored.stderr
        account = fresh.run(f"stat -c '%a %U' {ACCOUNT} && cat {ACCOUNT}").stdout.split()
        assert account == ["600", "caddy", ACCOUNT_KEY]
        root = pebble.issuing_root()
        url = f"https://shipit.test:{tls.https}"
        resolve = ["--resolve", f"shipit.test:{tls.https}:127.0.0.1", "--cacert", str(root)]
        body = _curl_until_issued([*resolve, url + "/notes"])
        assert body == before  # every table item and object came back
        secret = _curl_until_issued([*resolve, url + "/secret"])
        assert secret == {"sha256": hashlib.sha256(SECRET.encode()).hexdigest()}
        headers = subprocess.run(
            ["curl", "-sS", "-D", "-", "-o", "/dev/null", *resolve, url + "/"],
            capture_output=True, text=True, timeout=30,
        ).stdout.lower()  # fmt: skip
        assert "strict-transport-security: max-age=31536000" in headers
        redirect = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
             "--resolve", f"shipit.test:{tls.http}:127.0.0.1", f"http://shipit.test:{tls.http}/"],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        assert redirect.startswith("308 https://shipit.test"), redirect
        status = shoestring(project, "status")
        assert re.search(r"certificate shipit\.test\s+\w{3} ", status.stdout), status.stdout
        # The SMTP server offers Caddy's certificate with STARTTLS (copied every
        # 15 minutes by a timer; here, at once), without a restart.
        assert fresh.run(f"systemctl is-enabled {MAIL_TLS}.timer").stdout.strip() == "enabled"
        fresh.run(f"systemctl start {MAIL_TLS}.service")
        assert starttls_certificate(root) == served_certificate(tls.https, "shipit.test", root)

        # Renewal: Caddy renews with a third of the lifetime left.
        first = served_certificate(tls.https, "shipit.test", root)
        deadline = time.monotonic() + CERT_SECONDS * 2
        while served_certificate(tls.https, "shipit.test", root) == first:
            assert time.monotonic() < deadline, "the certificate was not renewed"
            time.sleep(2)
        print(f"\ncertificate renewed after {time.monotonic() - deadline + CERT_SECONDS * 2:.0f}s")
        fresh.run(f"systemctl start {MAIL_TLS}.service")
        assert starttls_certificate(root) == served_certificate(tls.https, "shipit.test", root)


def starttls_certificate(cafile: Path) -> bytes:
    """The certificate the SMTP server on port 25 offers for shipit.test, verified."""
    client = smtplib.SMTP(timeout=10)
    client.connect("127.0.0.1", 25)
    client._host = "shipit.test"  # the name to verify, as a sender resolving the MX would
    try:
        client.starttls(context=ssl.create_default_context(cafile=str(cafile)))
        der = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    finally:
        client.quit()
    assert der is not None
    return der


def _curl_until_issued(args: list[str], timeout: float = 60) -> object:
    """Caddy gets the certificate in the background: retry until TLS verifies."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            ["curl", "-sS", "--fail", *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0:
            return json.loads(done.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(f"no verified HTTPS answer: {done.stderr}")
        time.sleep(1)
