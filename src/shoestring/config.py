"""Settings: `shoestring.toml` in the project directory, overridden by environment.

Every key has a default that works on a laptop. An environment variable
`SHOESTRING_<SECTION>__<KEY>` (or `SHOESTRING_<KEY>` for top-level keys)
overrides the file, e.g. `SHOESTRING_SERVER__PORT=9000`. A bad file or value
raises `ConfigError` naming where it came from, the key, what was found and
what is allowed.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from shoestring.errors import ConfigError
from shoestring.secrets import SECRET_ENV_PREFIX, setting_secrets

CONFIG_FILE = "shoestring.toml"
ENV_PREFIX = "SHOESTRING_"
ENV_NESTING = "__"


class Section(BaseModel):
    """A table of shoestring.toml: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSettings(Section):
    name: str = Field("", description="Project name; empty means the App's own name.")
    app: str = Field(
        "app:app",
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="The App to serve, as `module:attribute` importable from the project directory.",
    )


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    workers: int = Field(
        1, ge=1, le=64, description="Server processes sharing the port (`run --workers`)."
    )
    shutdown_timeout: int = Field(
        10,
        gt=0,
        le=3600,
        description="Seconds in-flight requests get to finish after SIGTERM before they are cancelled.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated, `*` for any).",
    )


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written to the log."
    )
    format: Literal["json", "console"] = Field(
        "json",
        description="`json`: one JSON object per line; `console`: readable lines for a terminal.",
    )
    access_log: bool = Field(True, description="Write one line per HTTP request.")


class DatabaseSettings(Section):
    url: str = Field(
        "",
        description="`sqlite:///path.db` (relative to the project directory) or `postgresql://user:pass@host/db`; empty means SQLite at `<data_dir>/shoestring.db`.",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="`full`: every commit is fsync'd before it is acknowledged; `normal` may lose the last commits on power loss.",
    )
    busy_timeout_ms: int = Field(
        5000, ge=0, description="How long SQLite waits for another process's write lock."
    )
    pool_min: int = Field(1, ge=0, description="PostgreSQL connections kept open.")
    pool_max: int = Field(10, ge=1, description="Most PostgreSQL connections at once.")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            scheme = url.split(":", 1)[0] if ":" in url else url
            raise ValueError(
                f"{scheme!r} is not a database shoestring runs on: use `sqlite:///path.db`, "
                "`postgresql://user:pass@host/db`, or leave it empty for SQLite in the data directory"
            )
        return url


class TableSettings(Section):
    indexes: list[str] = Field(
        default_factory=list,
        description="Extra indexes of `[tables.NAME]`: a field (`owner`) or field and sort field (`owner/created`).",
    )


class JobsSettings(Section):
    worker: bool = Field(True, description="Run jobs in this process.")
    scheduler: bool = Field(
        True,
        description="Fire schedules from this process (exactly once per tick across processes either way).",
    )
    concurrency: int = Field(8, ge=1, le=1000, description="Jobs one process runs at a time.")
    poll_interval: float = Field(
        0.5, gt=0, le=60, description="Seconds between looks for jobs enqueued by other processes."
    )
    shutdown_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds running jobs get to finish at shutdown before they are released for retry.",
    )
    keep_finished_hours: float = Field(
        24.0,
        ge=0,
        description="Hours succeeded and cancelled jobs stay listed before they are purged.",
    )


class InboundSettings(Section):
    enabled: bool = Field(
        False,
        description="Run the receiving SMTP server (with `shoestring run`, or `--role smtp` alone).",
    )
    host: str = Field(
        "127.0.0.1", description="Address the SMTP server listens on (`0.0.0.0` in production)."
    )
    port: int = Field(2525, ge=1, le=65535, description="Its TCP port (25 in production).")
    hostname: str = Field(
        "",
        description="The name it greets with and signs Authentication-Results as; empty: this host's FQDN.",
    )
    domains: list[str] = Field(
        default_factory=list,
        description="Domains it accepts mail for; every other recipient is refused (never an open relay).",
    )
    postmaster: str = Field(
        "",
        description="Where mail to postmaster@ each of `domains` goes, before any handler pattern (RFC 5321 §4.5.1 requires every mail domain to accept it): an address at another domain, which gets it as an attachment. Empty: a handler pattern may take it, else it is refused.",
    )
    max_message_size: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest message in bytes, refused at MAIL SIZE= and at DATA.",
    )
    max_recipients: int = Field(50, ge=1, le=1000, description="Recipients one message may have.")
    unknown_recipients_per_hour: int = Field(
        30,
        ge=1,
        description="Recipients one address may name that do not exist here (550 5.1.1) in an hour; past it, every recipient it names gets 450 4.7.1 until the hour ends, so nobody can try out which addresses exist.",
    )
    max_connections: int = Field(
        100,
        ge=1,
        description="Open SMTP connections in all, from every address together; past it a new one gets 421 4.3.2 (each may hold a message of up to `max_message_size` in memory).",
    )
    max_connections_per_ip: int = Field(
        10,
        ge=1,
        description="Open SMTP connections one client (an IPv4 address, or an IPv6 /64) may hold.",
    )
    max_bad_commands: int = Field(
        10, ge=1, description="Errors a client may cause before it is disconnected."
    )
    tls_cert: str = Field(
        "",
        description="PEM certificate offered with STARTTLS, read again when the file changes; on a deployed host with `inbound_mail`, Caddy's for the MX host name (see docs/deploy.md).",
    )
    tls_key: str = Field("", description="PEM private key of `tls_cert`.")
    nameservers: list[str] = Field(
        default_factory=list,
        description="DNS servers (`ip` or `ip:port`) for the SPF, DKIM and DMARC checks, e.g. a local caching resolver; empty: the system's.",
    )
    dmarc_reject: Literal["reject", "quarantine", "accept"] = Field(
        "reject",
        description="What to do with mail failing DMARC whose domain publishes `p=reject`: refuse it at DATA, keep it marked as quarantined, or accept it.",
    )


class MailSettings(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sender: str = Field(
        "noreply@example.com",
        alias="from",
        description="Default From address, e.g. `TapTapMail <noreply@taptapmail.example>`.",
    )
    transport: str = Field(
        "dev",
        pattern=r"^(dev|smtps?://.+|ses(://.*)?|direct)$",
        description="`dev` (nothing leaves the machine; see `shoestring mail ls` and /_dev/mail), `smtp://user:pass@host:587` (STARTTLS), `smtps://user:pass@host:465`, `ses` or `ses://REGION` (Amazon SES), or `direct` (straight to each recipient's MX).",
    )
    timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds one delivery attempt (an SMTP conversation, an SES call) may take.",
    )
    retries: int = Field(
        8,
        ge=0,
        le=50,
        description="Retries of a temporary failure (4xx, timeout) before giving up.",
    )
    retry_backoff: float = Field(
        30.0, gt=0, description="Seconds before the first retry; doubles each time."
    )
    rate_per_minute: int = Field(120, ge=1, description="Messages sent per minute, per process.")
    rate_per_recipient_per_hour: int = Field(
        20, ge=1, description="Messages to one address per hour, per process."
    )
    dkim_domain: str = Field(
        "", description="Sign with DKIM for this domain (key from `shoestring mail dkim init`)."
    )
    dkim_selector: str = Field("mail", description="The DKIM selector of the key.")
    keep_sent: bool = Field(
        False,
        description="Keep bodies and recipients of delivered messages (the dev transport always keeps them).",
    )
    templates: str = Field(
        "templates/mail",
        description="Directory of `send_template` templates, relative to the project.",
    )
    inbound: InboundSettings = Field(default_factory=InboundSettings)


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


class SiteSettings(Section):
    root: str = Field(
        "",
        description="Directory served as it is, relative to the project; empty: the releases `shoestring sites publish` made.",
    )
    root_in: Literal["project", "data"] = Field(
        "project",
        description="What `root` is relative to: `project` (files you ship) or `data`, the data directory (files the app writes, e.g. published content: they move with `data_dir` and outlive releases).",
    )
    bucket: str = Field(
        "",
        description="Serve the releases `shoestring sites publish` uploads to this storage bucket (fs or s3 backend) instead of the data directory; not with `root`.",
    )
    prefix: str = Field(
        "",
        description="With `bucket`: key prefix of the site's releases and live pointer; empty means `NAME/`.",
    )
    path: str = Field("/", pattern=r"^/", description="URL path the site is served under.")
    host: str = Field("", description="Serve only for this Host header (e.g. `www.example.com`).")
    spa: bool = Field(
        False,
        description="Single-page app: paths without an extension that accept HTML get index.html.",
    )
    not_found: str = Field("404.html", description="Page served with status 404 for missing files.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra response headers, e.g. a Content-Security-Policy."
    )

    @field_validator("headers")
    @classmethod
    def _sendable(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a header name: letters, digits and !#$%&'*+-.^_`|~ only"
                )
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(
                    f"the value of {name} must be printable ASCII on one line (found {value!r}); "
                    "percent-encode anything else"
                )
        return headers

    def model_post_init(self, context: Any, /) -> None:
        # Checked here rather than per field: the problems are about how the
        # keys combine, and pydantic reports them at `sites.NAME`, naming the site.
        from shoestring.storage.keys import check_bucket_name

        if self.root and self.bucket:
            raise ValueError(
                f"`root` ({self.root!r}) and `bucket` ({self.bucket!r}) are both set: a site "
                "serves a directory (`root`) or releases in a bucket (`bucket`), not both"
            )
        if self.root_in == "data" and not self.root:
            raise ValueError('`root_in = "data"` needs `root`: the directory in the data directory')
        if self.prefix and not self.bucket:
            raise ValueError("`prefix` is only used with `bucket`: set `bucket` or remove `prefix`")
        if self.bucket:
            try:
                check_bucket_name(self.bucket)
            except ValueError as exc:
                raise ValueError(f"`bucket`: {exc}") from None
        parts = self.prefix.removesuffix("/").split("/")
        if self.prefix and (
            self.prefix.startswith("/") or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(
                f"`prefix` = {self.prefix!r} must be key segments like `sites/www/`: "
                "no leading `/`, no empty, `.` or `..` segments"
            )


class CorsSettings(Section):
    origins: list[str] = Field(
        default_factory=list,
        description='Origins whose pages may call the app from a browser (`"https://www.example.com"`), or `["*"]` for any; empty: none, browsers\' same-origin rule.',
    )
    paths: list[str] = Field(
        default_factory=lambda: ["/"],
        description='URL path prefixes it applies to, e.g. `["/api"]`. Never shoestring\'s own `/_` routes: the S3 API has CORS per bucket.',
    )
    headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type"],
        description="Request headers those pages may send.",
    )
    methods: list[str] = Field(
        default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        description="Methods those pages may use.",
    )
    credentials: bool = Field(
        False,
        description='Let those pages send cookies; not with `origins = ["*"]`. Bearer tokens need no cookies.',
    )
    max_age: int = Field(
        600, ge=0, le=86400, description="Seconds a browser may remember a preflight answer."
    )

    def model_post_init(self, context: Any, /) -> None:
        for origin in self.origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ValueError(
                    f"`origins`: {origin!r} is not an origin: give scheme and host, with a port "
                    "if not the default (`https://www.example.com`), no path; or `*` for any"
                )
        if self.credentials and "*" in self.origins:
            raise ValueError(
                "`credentials = true` needs the origins listed: browsers refuse cookies "
                'to any origin (`"*"`)'
            )
        for path in self.paths:
            if not path.startswith("/"):
                raise ValueError(f"`paths`: {path!r} must start with `/`")


class StorageSettings(Section):
    backend: Literal["fs", "s3"] = Field(
        "fs",
        description="`fs`: files under `<data_dir>/storage`; `s3`: any S3 service (see `endpoint`, `region`, `bucket_prefix`).",
    )
    path: str = Field(
        "",
        description="fs backend: where objects live, relative to `data_dir`; empty means `<data_dir>/storage`.",
    )
    fsync: bool = Field(
        True,
        description="fs backend: fsync every object before acknowledging it; `false` may lose recent writes on power loss.",
    )
    endpoint: str = Field(
        "", description="s3 backend: the service's URL; empty means AWS S3 in `region`."
    )
    region: str = Field("us-east-1", description="s3 backend: the region to sign requests for.")
    bucket_prefix: str = Field(
        "",
        description="s3 backend: prepended to every bucket name, so several projects can share an account.",
    )
    access_key_id: str = Field(
        "",
        description="s3 backend: access key; empty means the standard AWS chain (environment, ~/.aws, instance role).",
    )
    secret_access_key: SecretStr = Field(
        SecretStr(""), description="s3 backend: secret key belonging to `access_key_id`."
    )
    api: bool = Field(
        True,
        description="Serve the S3-compatible HTTP API (boto3, aws cli, rclone) on the main port.",
    )
    api_prefix: str = Field(
        "/_s3",
        pattern=r"^/_[A-Za-z0-9_-]+$",
        description='URL path of the S3 API, path-style: `endpoint_url="http://host:8000/_s3"`.',
    )
    api_host: str = Field(
        "",
        description="Also serve the S3 API at this host name (`s3.example.com`), path-style and virtual-host style (`BUCKET.s3.example.com`).",
    )
    public_url: str = Field(
        "",
        description="Base URL of the S3 API in presigned URLs; empty means `http://<server.host>:<server.port><api_prefix>`.",
    )
    max_object_size: int = Field(
        5 * 1024**3, gt=0, description="Largest object (or part) accepted, in bytes."
    )
    clock_skew: int = Field(
        900,
        ge=1,
        le=3600,
        description="Seconds a signed request's date may differ from the server's clock.",
    )
    secret_key_file: str = Field(
        "",
        description="File with the key that encrypts access keys' secrets, relative to `data_dir`; empty means `<data_dir>/storage-secret.key` (created, mode 0600).",
    )


_DOMAIN = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.I
)
_BASE_DIR = re.compile(r"/[A-Za-z0-9._/-]*")


class DeploySettings(Section):
    host: str = Field(
        "",
        pattern=r"^$|^([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.:\[\]-]+?(:\d+)?$",
        description="Where `shoestring deploy` goes: `user@address[:port]` over SSH (a fresh Debian 12 or Ubuntu 24.04; root or a user with password-less sudo).",
    )
    ssh_key: str = Field(
        "",
        description="Private key for SSH, e.g. `~/.ssh/id_ed25519`; empty means your SSH agent and default keys.",
    )
    known_hosts: str = Field(
        "~/.ssh/known_hosts",
        description="Host keys checked on connect; a host not listed yet is trusted on first use and added (as OpenSSH's `accept-new`).",
    )
    domains: list[str] = Field(
        default_factory=list,
        description="Domain names Caddy serves with automatic HTTPS (certificates from `acme_ca`); empty means plain HTTP on `http_port`.",
    )
    acme_email: str = Field(
        "", description="Contact address given to the certificate authority (expiry warnings)."
    )
    acme_ca: str = Field(
        "",
        description="ACME directory URL; empty means Caddy's default (Let's Encrypt, with ZeroSSL as fallback).",
    )
    acme_ca_root: str = Field(
        "",
        description="Local PEM file of the root that signs `acme_ca`'s own HTTPS certificate (for a private CA such as Pebble); uploaded to the host.",
    )
    hsts: bool = Field(
        False,
        description="Send Strict-Transport-Security (one year, subdomains): browsers then refuse plain HTTP for the domains.",
    )
    http_port: int = Field(
        80, ge=1, le=65535, description="Caddy's HTTP port (redirects to HTTPS)."
    )
    https_port: int = Field(443, ge=1, le=65535, description="Caddy's HTTPS port.")
    caddy_admin: str = Field(
        "localhost:2019", description="Caddy's admin API address on the host (never exposed)."
    )
    caddy_options: list[str] = Field(
        default_factory=list,
        description="Extra lines for Caddy's global options, e.g. `renew_interval 1h`.",
    )
    ports: list[int] = Field(
        default_factory=lambda: [8001, 8002],
        min_length=2,
        max_length=2,
        description="The two loopback ports releases alternate between, so a new one starts beside the old.",
    )
    user: str = Field(
        "",
        pattern=r"^$|^[a-z_][a-z0-9_-]{0,31}$",
        description="System user the app runs as; empty means the project name.",
    )
    base_dir: str = Field(
        "/srv",
        description="Releases go under `<base_dir>/<project>`; data under `/var/lib/<project>`.",
    )
    keep_releases: int = Field(
        5, ge=2, le=100, description="Releases kept on the host for `shoestring rollback`."
    )
    pre_deploy: list[str] = Field(
        default_factory=list,
        description="Shell commands run on the host in the new release, as the app's user, before it starts.",
    )
    post_deploy: list[str] = Field(
        default_factory=list,
        description="Shell commands run on the host in the new release, as the app's user, after it serves.",
    )
    packages: list[str] = Field(
        default_factory=list, description="Extra Debian packages installed on the host."
    )
    firewall: bool = Field(
        True,
        description="Install an nftables firewall that lets in only SSH, HTTP and HTTPS (and SMTP with `inbound_mail`).",
    )
    inbound_mail: bool = Field(
        False, description="Open port 25 in the firewall for the receiving mail server."
    )
    upgrades_reboot_time: str = Field(
        "04:00",
        pattern=r"^$|^([01]\d|2[0-3]):[0-5]\d$",
        description="unattended-upgrades installs security updates daily and, when one needs it, reboots at this time (`HH:MM`); empty never reboots.",
    )
    health_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a new release has to answer /_ready before it is abandoned.",
    )
    drain_seconds: float = Field(
        5.0,
        ge=3,
        description="Seconds the old release keeps serving once the new one is ready (at least 3: Caddy checks readiness every 2 s); then it finishes its requests and stops.",
    )

    @field_validator("domains")
    @classmethod
    def _host_names(cls, domains: list[str]) -> list[str]:
        for domain in domains:
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(
                    f"{domain!r} is not a domain name (like `example.com` or `*.example.com`)"
                )
        return domains

    @field_validator("base_dir")
    @classmethod
    def _plain_absolute_path(cls, base_dir: str) -> str:
        if not _BASE_DIR.fullmatch(base_dir) or ".." in base_dir.split("/"):
            raise ValueError(
                "must be an absolute path of letters, digits and `._-/` (like `/srv`), "
                "without `..`: it is used in commands run as root on the host"
            )
        return base_dir

    @field_validator("ports")
    @classmethod
    def _two_ports(cls, ports: list[int]) -> list[int]:
        if len(set(ports)) != len(ports) or not all(1 <= port <= 65535 for port in ports):
            raise ValueError("must be two different ports between 1 and 65535, like [8001, 8002]")
        return ports

    def model_post_init(self, context: Any, /) -> None:
        taken = {self.http_port: "http_port", self.https_port: "https_port"}
        clash = next((port for port in self.ports if port in taken), None)
        if clash is not None:
            raise ValueError(
                f"`ports` holds {clash}, which is `{taken[clash]}` too: releases need ports "
                "of their own"
            )


class Settings(Section):
    data_dir: Path = Field(
        Path("data"),
        description="Where the embedded default keeps everything it writes; relative to the project directory.",
    )
    project: ProjectSettings = Field(default_factory=ProjectSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    sites: dict[str, SiteSettings] = Field(
        default_factory=dict, description="Static sites, `[sites.NAME]`."
    )
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    tables: dict[str, TableSettings] = Field(
        default_factory=dict, description="Per-table settings, `[tables.NAME]`."
    )


def load_settings(
    project_dir: str | os.PathLike[str] = ".",
    environ: Mapping[str, str] | None = None,
    *,
    new_secrets: Mapping[str, str] | None = None,
) -> Settings:
    """Read `shoestring.toml` from `project_dir`, apply environment overrides, validate.

    Relative paths (the data directory) are resolved against `project_dir`.
    `new_secrets` are settings kept as secrets that are not stored yet (to
    check them first). Raises `ConfigError` listing every problem found.
    """
    directory = Path(project_dir).resolve()
    path = directory / CONFIG_FILE
    data = _read_toml(path) if path.exists() else {}
    environ = os.environ if environ is None else environ
    # Settings kept as secrets (see shoestring/secrets.py) override the file;
    # the environment overrides both.
    secrets = setting_secrets(_data_dir(directory, data, environ) / "secrets")
    origins = _apply_environment(data, secrets | dict(new_secrets or {}), "secret")
    origins |= _apply_environment(data, environ, "environment variable")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        found = [_describe(error, path, origins) for error in exc.errors()]
        from_file = any(where == path.name for where, _ in found)
        source = str(path) if from_file else f"the environment and secrets of {directory}"
        raise ConfigError(source, [f"{where}: {problem}" for where, problem in found]) from None
    return _resolve_paths(settings, directory)


def project_data_dir(
    project_dir: str | os.PathLike[str] = ".", environ: Mapping[str, str] | None = None
) -> Path:
    """The project's data directory, read without validating the other settings."""
    directory = Path(project_dir).resolve()
    path = directory / CONFIG_FILE
    data = _read_toml(path) if path.exists() else {}
    return _data_dir(directory, data, os.environ if environ is None else environ)


def _data_dir(directory: Path, data: Mapping[str, Any], environ: Mapping[str, str]) -> Path:
    value = environ.get(ENV_PREFIX + "DATA_DIR") or data.get("data_dir")
    return directory / (
        value if isinstance(value, str) else Settings.model_fields["data_dir"].default
    )


def _resolve_paths(settings: Settings, directory: Path) -> Settings:
    """Make relative paths relative to the project directory, not the working one."""
    data_dir = directory / settings.data_dir
    update: dict[str, Any] = {"data_dir": data_dir}
    update["sites"] = {
        name: site.model_copy(
            update={"root": str((data_dir if site.root_in == "data" else directory) / site.root)}
        )
        if site.root
        else site
        for name, site in settings.sites.items()
    }
    update["mail"] = settings.mail.model_copy(
        update={"templates": str(directory / settings.mail.templates)}
    )
    url = settings.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        absolute = f"sqlite:///{directory / url.removeprefix('sqlite:///')}"
        update["database"] = settings.database.model_copy(update={"url": absolute})
    return settings.model_copy(update=update)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read: {exc.strerror}"]) from None


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str], kind: str
) -> dict[str, str]:
    """Overlay SHOESTRING_* variables onto `data`; return dotted key -> where it came from."""
    origins: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        if name.startswith(SECRET_ENV_PREFIX):
            continue  # a secret's value (see shoestring/secrets.py), not a setting
        keys = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        target = data
        for key in keys[:-1]:
            child = target.setdefault(key, {})
            if not isinstance(child, dict):
                child = target[key] = {}
            target = child
        target[keys[-1]] = _parse_env_value(raw)
        origins[".".join(keys)] = f"{kind} {name}"
    return origins


def _parse_env_value(raw: str) -> Any:
    # Lists and tables are written as JSON; scalars stay strings and pydantic
    # coerces them ("9000" -> 9000, "true" -> True).
    if raw.startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _describe(error: Any, path: Path, origins: Mapping[str, str]) -> tuple[str, str]:
    """Where a validation error comes from (the file, a variable, a secret) and what it is."""
    key = ".".join(str(part) for part in error["loc"])
    # An unknown section (`sever`) was set by a variable naming a key in it (`sever.port`).
    where = origins.get(key) or next(
        (origin for name, origin in origins.items() if name.startswith(key + ".")), path.name
    )
    if error["type"] == "extra_forbidden":
        return where, f"unknown key `{key}`; allowed here: {_allowed_keys(error['loc'][:-1])}"
    message = error["msg"].removeprefix("Value error, ")
    if where.startswith("secret "):
        problem = f"`{key}` (its value is secret, not shown): {message}"
    else:
        shown = error.get("input")
        shown = without_url_passwords(shown) if isinstance(shown, str) else shown
        problem = f"`{key}` = {shown!r}: {message}"
    if where != path.name and error["type"] in ("list_type", "dict_type", "set_type"):
        problem += """ (write lists and tables as JSON: '["a", "b"]', '{"k": "v"}')"""
    return where, problem


REDACTED = "********"
# `scheme://user:password@host`: the password runs to the last `@` of the word,
# since a password may hold `@` or `/` (a URL parser would take the first).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)\S*@", re.IGNORECASE)


# libpq and others also take `?password=...` (and tokens) as query parameters.
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:password|passwd|pass|secret|token|sslpassword)=)[^&#\s]*", re.IGNORECASE
)


def without_url_passwords(text: str) -> str:
    """`text` with the password of any URL in it replaced by REDACTED."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED + "@", text)
    return _QUERY_SECRET.sub(lambda m: m["head"] + REDACTED, text)


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Settings
    parts = iter(loc)
    for part in parts:
        annotation = model.model_fields[str(part)].annotation
        if typing.get_origin(annotation) is dict:  # `[sites.NAME]`: NAME is the user's
            annotation = typing.get_args(annotation)[1]
            if next(parts, None) is None:
                return "(any name)"
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "(none)"
        model = annotation
    return ", ".join(model.model_fields)
