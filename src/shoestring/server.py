"""The process runner behind `shoestring run` and `shoestring dev`.

One process, one event loop: the HTTP server and every service of the App
share it. `--workers N` starts N such processes on one listening socket.
SIGTERM or SIGINT stops accepting, lets in-flight requests finish within
`server.shutdown_timeout`, stops the services and exits 0.

The HTTP server is uvicorn (httptools + uvloop): it runs inside our event
loop, so services share it, and it measured as fast as granian for this
workload (bench/http_server.py, docs/benchmarks.md). This module is the one
place that knows which server is used.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import uvicorn
import uvloop
from uvicorn.server import HANDLED_SIGNALS

from shoestring.app import App
from shoestring.config import Settings, load_settings
from shoestring.errors import ShoestringError
from shoestring.loader import load_app
from shoestring.logs import configure_logging

log = logging.getLogger("shoestring.server")


class PortInUseError(ShoestringError):
    """The HTTP port is taken by another process."""


ROLES = frozenset({"web", "worker", "scheduler", "smtp"})


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


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that a shutdown asked for by a signal exits 0.

    uvicorn re-raises the signal after shutting down, which makes the process
    die "killed by SIGTERM"; for a supervisor (systemd, deploys) a requested,
    completed shutdown is a success.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_startup_objects()


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


def run_project(project_dir: Path, overrides: Overrides = Overrides()) -> int:
    """Serve the project in `project_dir` until a signal asks it to stop."""
    settings, app = prepare(project_dir, overrides)
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
        return serve(app, settings, sock)
    return _supervise(project_dir, overrides, settings.server.workers, sock)


def serve(app: App, settings: Settings, sock: socket.socket) -> int:
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.server.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.server.shutdown_timeout,
    )
    server = GracefulServer(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def run_headless(app: App, roles: frozenset[str]) -> int:
    """Run the app's services (jobs, schedules) without HTTP until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        async with app.running(mounted=False):
            freeze_startup_objects()
            log.info("running %s for %s (no HTTP)", ", ".join(sorted(roles)), app.name)
            await stop.wait()
            log.info("stopping")

    uvloop.run(main())
    return 0


def _worker(project_dir: Path, overrides: Overrides, sock: socket.socket) -> None:
    settings, app = prepare(project_dir, overrides)
    raise SystemExit(serve(app, settings, sock))


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
    processes = [start() for _ in range(workers)]
    while not stopping.wait(0.5):
        for index, process in enumerate(processes):
            if not process.is_alive():
                if process.exitcode == 1:
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
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    return 1 if failed else 0
