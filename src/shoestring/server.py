"""The process runner behind `shoestring run` and `shoestring dev`.

One process, one event loop: the HTTP server and every service of the App
share it. `--workers N` starts N such processes on one listening socket.
SIGTERM or SIGINT stops accepting, lets in-flight requests finish within
`server.shutdown_timeout`, stops the services and exits 0.

The HTTP server is granian, embedded: its Rust threads parse requests and
write responses while the event loop runs the App, which answered 1.75 times
the requests it did under uvicorn on this machine (bench/http_server.py,
docs/benchmarks.md). It serves a socket shoestring binds itself, so a taken
port is a clear error rather than a port silently shared. This module is the
one place that knows which server is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.net import SocketHolder  # type: ignore[attr-defined]
from granian.server.embed import Server as EmbeddedServer
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shoestring.app import App
from shoestring.config import Settings, load_settings
from shoestring.errors import ShoestringError
from shoestring.http.request_log import InFlight
from shoestring.loader import load_app
from shoestring.logs import configure_logging
from shoestring.running import mark_running

log = logging.getLogger("shoestring.server")


class PortInUseError(ShoestringError):
    """The HTTP port is taken by another process."""


ROLES = frozenset({"web", "worker", "scheduler", "smtp"})
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ACCEPT_LOOP_EXIT = 1.0  # seconds granian takes, at most, to stop accepting once told to
# Exit statuses of a serving process (0: stopped as asked). The supervisor of
# `--workers` gives up on a worker that cannot start and replaces one that failed later.
FAILED_TO_START = 1
FAILED = 70  # EX_SOFTWARE
BACKLOG = 2048

# granian's own messages go through shoestring's handler (see logs.py), and
# below errors they only describe its startup (including that embedding is
# "experimental"). Incremental: a full logging config would close that handler.
GRANIAN_LOGGING = {
    "version": 1,
    "incremental": True,
    "formatters": {},
    "handlers": {},
    "loggers": {"_granian": {"propagate": True}},
}


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values that win over shoestring.toml and the environment."""

    host: str | None = None
    port: int | None = None
    workers: int | None = None
    log_format: Literal["json", "console"] | None = None
    roles: frozenset[str] = ROLES

    def apply(self, settings: Settings) -> Settings:
        server = {
            k: v
            for k, v in (("host", self.host), ("port", self.port), ("workers", self.workers))
            if v is not None
        }
        update: dict[str, object] = {"server": settings.server.model_copy(update=server)}
        if self.log_format is not None:
            update["log"] = settings.log.model_copy(update={"format": self.log_format})
        if self.roles != ROLES:
            jobs = {"worker": "worker" in self.roles, "scheduler": "scheduler" in self.roles}
            update["jobs"] = settings.jobs.model_copy(update=jobs)
            if "smtp" not in self.roles:
                inbound = settings.mail.inbound.model_copy(update={"enabled": False})
                update["mail"] = settings.mail.model_copy(update={"inbound": inbound})
        return settings.model_copy(update=update)


class HttpServer(EmbeddedServer):
    """granian in this process's event loop, on a socket shoestring has bound and listens on."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        super().__init__(
            app,
            interface=Interfaces.ASGINL,  # the App's services start around serving, below
            http=HTTPModes.http1,
            backlog=BACKLOG,
            log_level=LogLevels.error,
            log_dictconfig=GRANIAN_LOGGING,
        )
        self._socket = sock

    def _init_shared_socket(self) -> None:
        self._ssp = None
        # granian's type stub leaves out the constructor and types the slot as None.
        # A copy of the descriptor: granian closes what it is given when it stops.
        self._shd = SocketHolder(os.dup(self._socket.fileno()), False, BACKLOG)  # type: ignore[call-arg,assignment]


def freeze_startup_objects() -> None:
    """Exempt what startup loaded (modules, the app, its services) from garbage collection.

    They live as long as the process, yet a full collection walks all of them:
    40-50 ms on this machine's 2 cores with an app loaded, every few thousand
    requests, which stalled every request in flight. Frozen, a full
    collection walks only what was made since. (No collection first: startup
    leaves next to no garbage, and one would delay the first request.)
    """
    gc.freeze()


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use: stop the other process "
                "or choose another port with --port"
            ) from None
        raise ShoestringError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def prepare(project_dir: Path, overrides: Overrides) -> tuple[Settings, App]:
    """Load settings and the App, and set up logging: everything before binding."""
    settings = overrides.apply(load_settings(project_dir))
    configure_logging(settings.log.level, settings.log.format)
    os.chdir(project_dir)
    app = load_app(project_dir, settings.project.app)
    app.configure(settings)
    return settings, app


# A SIGTERM or SIGINT before the event loop takes the signals over (while the app
# module imports, say): remembered, and honoured once the app has started.
_stop_asked = threading.Event()


def catch_stop_signals() -> None:
    def remember(signum: int, frame: object) -> None:
        _stop_asked.set()

    for sig in HANDLED_SIGNALS:
        signal.signal(sig, remember)


def stop_listening(sock: socket.socket) -> None:
    """Refuse new connections from now on (a proxy then tries another node at once)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # on Linux: no longer listening, for every copy of it


def run_project(project_dir: Path, overrides: Overrides = Overrides()) -> int:
    """Serve the project in `project_dir` until a signal asks it to stop."""
    catch_stop_signals()
    settings, app = prepare(project_dir, overrides)
    running = mark_running(settings.data_dir)  # noqa: F841 - held open until the process ends
    if "web" not in overrides.roles:
        return run_headless(app, overrides.roles)
    sock = bind_socket(settings.server.host, settings.server.port)
    host, port = sock.getsockname()[:2]
    log.info(
        "serving %s on http://%s:%d",
        settings.project.name or app.name,
        host,
        port,
        extra={"workers": settings.server.workers},
    )
    if settings.server.workers == 1:
        return serve(app, settings, sock, owner=True)
    return _supervise(project_dir, overrides, settings.server.workers, sock)


def serve(app: App, settings: Settings, sock: socket.socket, *, owner: bool) -> int:
    """Serve on `sock`; its `owner` (not one of several workers sharing it) closes it on stop."""
    status = uvloop.run(_serve(app, settings, sock, owner))
    # Stopped: a signal repeated while the interpreter exits must not turn a
    # clean stop into "killed by SIGTERM".
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return status


async def _serve(app: App, settings: Settings, sock: socket.socket, owner: bool) -> int:
    """Start the App's services, serve until a signal, let requests finish, stop the services."""
    sock.listen(BACKLOG)
    stop = _stop_event()
    phase = "start"
    try:
        async with app.running() as state:
            freeze_startup_objects()
            phase = "serve"
            if not stop.is_set():
                await _serve_http(app, state, settings, sock, stop, owner)
            phase = "stop"
            log.info("stopped serving; stopping services")
    except Exception:
        log.exception("the app failed to %s", phase)
        return FAILED_TO_START if phase == "start" else FAILED
    return 0


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM or SIGINT, from before startup (honoured once it is done) on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in HANDLED_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if _stop_asked.is_set():
        stop.set()
    return stop


async def _serve_http(
    app: App,
    state: dict[str, Any],
    settings: Settings,
    sock: socket.socket,
    stop: asyncio.Event,
    owner: bool,
) -> None:
    """Serve HTTP until `stop` is set, then let what is in flight finish (see `_finish`)."""
    entry = ProxyHeadersMiddleware(
        cast(Any, with_lifespan_state(app, state)),
        trusted_hosts=settings.server.forwarded_allow_ips,
    )
    server = HttpServer(entry, sock)
    serving = asyncio.create_task(server.serve())
    await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    await app.in_flight.close_websockets()  # while the server can still send the close frames
    server.stop()  # type: ignore[no-untyped-call]
    if owner:
        # Requests in flight still run: the socket stays bound until they end, and new
        # connections would wait in its queue unanswered. Refuse them instead, once
        # granian has left its accept loop (shut down under it, it would not stop).
        await asyncio.wait([serving], timeout=ACCEPT_LOOP_EXIT)
        if not serving.done():
            stop_listening(sock)
    await _finish(serving, app.in_flight, settings.server.shutdown_timeout)


async def _finish(serving: asyncio.Task[None], in_flight: InFlight, bound: int) -> None:
    """Let requests and WebSockets in flight finish within `bound` seconds; cancel what is left.

    The server stops once its HTTP requests are answered; a WebSocket's
    handler may run on after that, and is waited for too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not serving.done() or in_flight.tasks:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        waiting = [serving] if not serving.done() else []
        await asyncio.wait(
            [*waiting, *in_flight.tasks], timeout=remaining, return_when="FIRST_COMPLETED"
        )
    if in_flight.tasks:
        log.warning(
            "%d requests still running after the shutdown timeout of %ds; cancelling them",
            len(in_flight.tasks),
            bound,
        )
        in_flight.cancel()
    # With its last request gone the server stops by itself; it is not waited for past that.
    if not serving.done():
        await asyncio.wait([serving], timeout=2)
    if serving.done() and not serving.cancelled():
        serving.result()  # a failure of the server itself is the process's failure


def with_lifespan_state(app: ASGIApp, state: dict[str, Any]) -> ASGIApp:
    """`app`, with what mounted apps' lifespans yielded in each request's scope, as ASGI says."""
    if not state:
        return app

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = state.copy()  # a shallow copy per request, as servers do
        await app(scope, receive, send)

    return call


def run_headless(app: App, roles: frozenset[str]) -> int:
    """Run the app's services (jobs, schedules) without HTTP until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = _stop_event()
        async with app.running(mounted=False):
            freeze_startup_objects()
            log.info("running %s for %s (no HTTP)", ", ".join(sorted(roles)), app.name)
            await stop.wait()
            log.info("stopping")

    uvloop.run(main())
    return 0


def _worker(project_dir: Path, overrides: Overrides, sock: socket.socket) -> None:
    catch_stop_signals()
    settings, app = prepare(project_dir, overrides)
    raise SystemExit(serve(app, settings, sock, owner=False))


def _supervise(project_dir: Path, overrides: Overrides, workers: int, sock: socket.socket) -> int:
    """Run `workers` server processes on `sock`; replace any that dies; stop all on a signal."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(project_dir, overrides, sock), daemon=False)
        process.start()
        return process

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    for sig in HANDLED_SIGNALS:
        signal.signal(sig, request_stop)
    if _stop_asked.is_set():  # asked while the app loaded: no worker is started
        request_stop(signal.SIGTERM, None)
    processes = [start() for _ in range(workers)]
    while not stopping.wait(0.5):
        for index, process in enumerate(processes):
            if not process.is_alive():
                if process.exitcode == FAILED_TO_START:
                    log.error("a worker failed to start; stopping")
                    stopping.set()
                    break
                log.warning(
                    "worker %s exited with %s; starting another", process.pid, process.exitcode
                )
                processes[index] = start()
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: each worker shuts down gracefully
    # Once the workers have left their accept loops, their shared socket refuses
    # new connections (see _serve_http; shut down sooner, granian would not stop).
    if any(process.is_alive() for process in processes):
        time.sleep(ACCEPT_LOOP_EXIT)
        stop_listening(sock)
    for process in processes:
        process.join()
    # A worker still starting when the signal came dies of it, as asked.
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None, -signal.SIGTERM)]
    return 1 if failed else 0
