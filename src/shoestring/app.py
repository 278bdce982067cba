"""App: the one object through which a project declares what it serves.

    app = App("sideproject")

    @app.route("/notes", methods=["POST"])
    async def add_note(request: Request) -> dict[str, bool]: ...

    app.mount("/api", FastAPI())

An App is itself an ASGI application. `shoestring run` serves it; so can any
ASGI server or test client. Services (storage, tables, jobs, mail) attach to
`app.services` and start and stop with the app.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shoestring.config import Settings, load_settings
from shoestring.http.cors import PathCORS
from shoestring.http.handlers import Handler, HandlerApp
from shoestring.http.lifespan import MountedLifespan
from shoestring.http.request_log import InFlight, RequestLogMiddleware
from shoestring.http.responses import JSONResponse
from shoestring.http.routing import AppRoute, AppRouter, ReservedRoutes, reserved_only
from shoestring.services import ServiceRegistry
from shoestring.sites import site_routes

if TYPE_CHECKING:
    from shoestring.db import DatabaseService
    from shoestring.jobs import Job, Jobs
    from shoestring.mail import Mail
    from shoestring.mail.inbound import Inbound, InboundMessage
    from shoestring.secrets import Secrets
    from shoestring.storage import Storage
    from shoestring.tables import Table, Tables

log = logging.getLogger("shoestring.app")

Hook = Callable[[], Awaitable[None]]
H = TypeVar("H", bound=Handler)
P = ParamSpec("P")
K = TypeVar("K", bound=Hook)
MH = TypeVar("MH", bound="Callable[[InboundMessage], Awaitable[Any]]")

HEALTH_PATH = "/_health"
READY_PATH = "/_ready"
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class App:
    """A project's routes, mounted ASGI apps, lifecycle hooks and services."""

    def __init__(self, name: str, *, settings: Settings | None = None) -> None:
        if not _APP_NAME.match(name):
            raise ValueError(
                f"App name {name!r} must be 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self.name = name
        self.services = ServiceRegistry()
        self._settings = settings
        self._routes: list[BaseRoute] = []
        self._system_routes: list[BaseRoute] = []
        self._mounts: list[tuple[str, ASGIApp]] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._asgi: ASGIApp | None = None
        self._ready = False
        self._dev_mailbox = False
        self.in_flight = InFlight()  # the HTTP requests and WebSockets being handled
        # The database is always there (and first to start): shoestring's own
        # state lives in it, and plain-SQL users reach for `app.db` in handlers.
        from shoestring.db import DatabaseService

        self.services.add(DatabaseService(self))
        from shoestring.limits import RateLimits

        self.limits = RateLimits(self)
        """Rate limits shared by all processes: `await app.limits.hit(name, key, limit=, per=)`."""
        from shoestring.codes import Codes

        self.codes = Codes(self)
        """One-time codes to mail: `code = await app.codes.issue(purpose, key)`, then `redeem`."""

    # -- configuration -----------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The resolved settings; loaded from the current directory if never configured."""
        if self._settings is None:
            self._settings = load_settings(Path.cwd())
        return self._settings

    def configure(self, settings: Settings) -> None:
        """Use `settings` (the runtime calls this before serving)."""
        self._settings = settings
        self._asgi = None

    @property
    def data_dir(self) -> Path:
        """The directory the embedded default writes to, created on first use."""
        path = self.settings.data_dir
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def ready(self) -> bool:
        """True between the end of startup and the start of shutdown."""
        return self._ready

    # -- services ----------------------------------------------------------

    @property
    def db(self) -> DatabaseService:
        """The configured database (SQLite or PostgreSQL), for plain SQL and shoestring's own state."""
        from shoestring.db import DatabaseService

        service = self.services.get("db")
        assert isinstance(service, DatabaseService)
        return service

    @property
    def tables(self) -> Tables:
        """The app's document tables by name."""
        from shoestring.tables import Tables

        return self.services.require("tables", lambda: Tables(self))

    def table(
        self,
        name: str,
        *,
        key: str = "id",
        sort_key: str | None = None,
        indexes: Sequence[str | tuple[str, str]] = (),
        ttl: str | None = None,
    ) -> Table:
        """Define a document table; it is created (and its indexes built) when the app starts.

        `indexes` name fields to query by (`"owner"`), optionally with a sort
        field (`("owner", "created")`). `ttl` names a field holding an expiry
        (epoch seconds or aware datetime) after which the item disappears.
        """
        return self.tables.define(name, key=key, sort_key=sort_key, indexes=indexes, ttl=ttl)

    @property
    def jobs(self) -> Jobs:
        """The app's jobs and schedules."""
        from shoestring.jobs import Jobs

        if "jobs" not in self.services:
            # Start before jobs, stop after them: jobs write tables (enqueued with
            # their writes) and objects (storage triggers) until the worker stops.
            self.tables  # noqa: B018
            self.storage  # noqa: B018
        return self.services.require("jobs", lambda: Jobs(self))

    @property
    def secrets(self) -> Secrets:
        """Values kept out of git and the database: `app.secrets.ensure("hmac-key")`."""
        from shoestring.secret_checks import SecretChecks
        from shoestring.secrets import Secrets

        # What `ensure` returns is checked against the database (secret_checks.py),
        # at start for a secret used before the app runs (at import, say).
        checks = self.services.require("secrets", lambda: SecretChecks(self))
        return Secrets(self.settings.data_dir / "secrets", on_ensure=checks.used)

    @property
    def mail(self) -> Mail:
        """Outbound mail: `await app.mail.send(to=..., subject=..., text=...)`."""
        from shoestring.mail import Mail

        self.jobs  # noqa: B018 - delivery runs as jobs, so they start first
        return self.services.require("mail", lambda: Mail(self))

    @property
    def inbound(self) -> Inbound:
        """Received mail: the SMTP server (`[mail.inbound]`) and the `on_mail` handlers."""
        from shoestring.mail.inbound import Inbound

        self.jobs  # noqa: B018 - messages are processed by jobs, so those start first
        return self.services.require("inbound", lambda: Inbound(self))

    def on_mail(
        self,
        pattern: str,
        *,
        accept: Callable[[str], Awaitable[bool]] | None = None,
        screen: Callable[[InboundMessage], Awaitable[str | None]] | None = None,
    ) -> Callable[[MH], MH]:
        """Handle mail received for addresses matching `pattern` (`"*@notes.example"`).

        The decorated async function gets an InboundMessage, as a durable job
        after the message is safely spooled. `accept(address)` says at RCPT
        time whether the address exists (refused with 550 if not).
        `screen(message)` looks at the whole message, its authentication
        results included, before the 250 (`message.id` is still ""): a reason
        it returns refuses the message with 550 and that text, so the sending
        server tells its sender, and nothing is stored.
        """
        return self.inbound.on_mail(pattern, accept=accept, screen=screen)

    @property
    def storage(self) -> Storage:
        """Object storage: `app.storage.bucket("photos")`, also served as an S3 API at /_s3."""
        from shoestring.storage import Storage

        return self.services.require("storage", lambda: Storage(self))

    def job(
        self,
        *,
        retries: int = 3,
        backoff: float = 2.0,
        timeout: float = 300.0,
        queue: str = "default",
        name: str | None = None,
    ) -> Callable[[Callable[P, Awaitable[Any]]], Job[P]]:
        """Make an async function a durable job: `await fn.enqueue(...)` runs it later.

        A failed attempt is retried `retries` times, `backoff` seconds after
        the first failure and twice as long after each next one (with
        jitter); an attempt running over `timeout` seconds fails. After the
        last retry the job is dead, listed by `shoestring jobs ls --state dead`.
        """

        def decorator(function: Callable[P, Awaitable[Any]]) -> Job[P]:
            _require_async(function)
            return self.jobs.define(
                function, name=name, retries=retries, backoff=backoff, timeout=timeout, queue=queue
            )

        return decorator

    def schedule(
        self, cron: str, *, timezone: str = "UTC", retries: int = 3, name: str | None = None
    ) -> Callable[[Callable[[], Awaitable[Any]]], Job[[]]]:
        """Run the decorated async function on a cron schedule (`"0 3 * * *"`), once per tick."""
        from shoestring.jobs import Schedule

        def decorator(function: Callable[[], Awaitable[Any]]) -> Job[[]]:
            job = self.job(retries=retries, name=name)(function)
            self.jobs.add_schedule(Schedule.from_cron(job.name, job.name, cron, timezone))
            return job

        return decorator

    def every(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        retries: int = 3,
        name: str | None = None,
    ) -> Callable[[Callable[[], Awaitable[Any]]], Job[[]]]:
        """Run the decorated async function at a fixed interval, once per interval."""
        from shoestring.jobs import Schedule

        interval = seconds + 60 * minutes + 3600 * hours

        def decorator(function: Callable[[], Awaitable[Any]]) -> Job[[]]:
            job = self.job(retries=retries, name=name)(function)
            self.jobs.add_schedule(Schedule.from_interval(job.name, job.name, interval))
            return job

        return decorator

    # -- what the app serves ------------------------------------------------

    def route(
        self, path: str, *, methods: Sequence[str] = ("GET",), name: str | None = None
    ) -> Callable[[H], H]:
        """Serve `path` with the decorated async handler.

        The handler takes the Request (or nothing) and returns a Response,
        a dict or list (JSON), a str (text), bytes, or None (204).
        Path parameters (`/notes/{id}`) are in `request.path_params`.
        """

        def decorator(handler: H) -> H:
            self.add_route(path, handler, methods=methods, name=name)
            return handler

        return decorator

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str] = ("GET",),
        name: str | None = None,
    ) -> None:
        self._check_path(path)
        endpoint = HandlerApp(handler)
        upper = [method.upper() for method in methods]
        self._routes.append(AppRoute(path, endpoint, methods=upper, name=name or handler.__name__))
        self._asgi = None

    def mount(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        """Serve every request under `path` with any ASGI app (FastAPI, Starlette, ...).

        The mounted app's own lifespan (startup and shutdown) runs with the App's.
        """
        self._check_path(path)
        if path == "/" or not path.startswith("/") or path.endswith("/"):
            raise ValueError(
                f"mount path {path!r} must look like '/api': a leading '/', no trailing one"
            )
        self._mounts.append((path, app))
        self._routes.append(Mount(path, app=app, name=name))
        self._asgi = None

    def add_system_route(self, route: BaseRoute) -> None:
        """Serve a route of shoestring's own (the S3 API, dashboards) ahead of the app's.

        For services, not app code: system routes may use reserved `/_` paths.
        """
        self._system_routes.append(route)
        self._asgi = None

    def on_startup(self, hook: K) -> K:
        """Run `hook` after services start and before the first request."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: K) -> K:
        """Run `hook` after the last request and before services stop."""
        self._shutdown.append(hook)
        return hook

    def _check_path(self, path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with '/'")
        if path in (HEALTH_PATH, READY_PATH):
            raise ValueError(f"{path} is reserved for shoestring's health checks")

    # -- ASGI ------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._asgi is None:
            self._asgi = self._build()
        await self._asgi(scope, receive, send)

    def _build(self) -> ASGIApp:
        if self.settings.storage.api:
            # S3 clients expect the API whether or not the app's code uses storage.
            from shoestring.storage.service import serve_api

            serve_api(self)
        if self.settings.mail.transport == "dev" and not self._dev_mailbox:
            from shoestring.mail.devbox import serve_dev_mailbox

            serve_dev_mailbox(self)
            self._dev_mailbox = True
        system = [
            Route(HEALTH_PATH, self._health, methods=["GET"]),
            Route(READY_PATH, self._readiness, methods=["GET"]),
            *self._system_routes,
        ]
        routes: list[BaseRoute] = [
            ReservedRoutes([route for route in system if reserved_only(route)]),
            *[route for route in system if not reserved_only(route)],
            *self._routes,
            # Sites last: a site at "/" serves what no route or mount claimed.
            *site_routes(self.settings, buckets=lambda name: self.storage.bucket(name)),
        ]
        AppRoute.share_allow(self._routes)
        app: ASGIApp = AppRouter(routes=routes, lifespan=self._lifespan)
        if self.settings.cors.origins:
            app = PathCORS(app, self.settings.cors)
        return RequestLogMiddleware(
            app, access_log_enabled=self.settings.log.access_log, in_flight=self.in_flight
        )

    @asynccontextmanager
    async def _lifespan(self, _: AppRouter) -> AsyncIterator[dict[str, Any]]:
        async with self.running(mounted=True) as state:
            yield state

    @asynccontextmanager
    async def running(self, *, mounted: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Start services, mounted apps' lifespans and startup hooks; undo all on exit.

        The HTTP server does this around serving; `run --role worker` does it
        without HTTP (`mounted=False`). Yields the mounted apps' lifespan state.
        """
        lifespans = (
            [MountedLifespan(app, label=f"app mounted at {path}") for path, app in self._mounts]
            if mounted
            else []
        )
        started: list[MountedLifespan] = []
        # Every app can send mail from any handler: its outbox and delivery job
        # must exist before the database migrates and the worker starts.
        self.mail  # noqa: B018
        self.secrets  # noqa: B018 - registers the check of what `ensure` returns
        if self.settings.mail.inbound.enabled:
            self.inbound  # noqa: B018 - the SMTP server runs even before any handler exists
        await self.services.start_all()
        try:
            for lifespan in lifespans:
                await lifespan.startup()
                started.append(lifespan)
            for hook in self._startup:
                await hook()
        except BaseException:
            await _shut_down(reversed(started))
            await self.services.stop_all()
            raise
        self._ready = True
        state: dict[str, Any] = {}
        for lifespan in started:
            state.update(lifespan.state)
        try:
            yield state
        finally:
            self._ready = False
            for hook in self._shutdown:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
            await _shut_down(reversed(started))
            await self.services.stop_all()

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "app": self.name})

    async def _readiness(self, request: Request) -> Response:
        if not self._ready:
            return JSONResponse({"status": "not_ready", "services": {}}, status_code=503)
        checks = await self.services.health_all()
        ok = all(health.ok for health in checks.values())
        services = {name: {"ok": h.ok, "detail": h.detail} for name, h in checks.items()}
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "services": services},
            status_code=200 if ok else 503,
        )


def _require_async(function: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(function):
        name = getattr(function, "__qualname__", repr(function))
        raise TypeError(f"{name} must be defined with `async def`")


async def _shut_down(lifespans: Any) -> None:
    for lifespan in lifespans:
        try:
            await lifespan.shutdown()
        except Exception:
            log.exception("%s failed to shut down", lifespan.label)
