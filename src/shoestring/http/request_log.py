"""Request ids, the access log, and the answer to every error.

The outermost middleware: every HTTP response carries `X-Request-ID` (the
client's or proxy's own, if it is a sane token, else a fresh one), every log
line written while handling the request carries it, and one access-log line
per request records method, path, status, size and duration (except
successful health probes, which a proxy sends every few seconds). Personal data
in paths and queries is removed by the log scrubber. An exception a request
raises is answered here: an HTTP error as its JSON error, anything else as a
logged JSON 500. It also knows which requests are in flight, so that a
shutdown past its bound can cancel them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoestring.http.errors import (
    error_log,
    error_response,
    http_error_response,
    internal_error,
)
from shoestring.logs import request_id_var, write_access_line

REQUEST_ID_HEADER = b"x-request-id"
PROBE_PATHS = frozenset({"/_health", "/_ready"})
SHUTDOWN_MESSAGE = "The server stopped before this request finished; send it again."
GOING_AWAY = "The server is restarting; connect again."
CLIENT_CLOSED = 499  # in the access log: the client closed the connection first (nginx's code)
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


# Request ids need to be unique, not secret: a private generator seeded from
# the OS (and reseeded in a forked child) costs no system call per request.
_ids = random.Random()  # noqa: S311 - not a secret
os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SAFE_REQUEST_ID.match(value) else None
    return None


class InFlight:
    """The requests and WebSockets being handled, for a shutdown to close, wait for or cancel."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        # Each open WebSocket's way to send it a close frame.
        self.websockets: dict[asyncio.Task[object], Send] = {}
        self.cancelled = False

    async def close_websockets(self) -> None:
        """Tell each open WebSocket's client that the server is going away (1001).

        Sent while the server still serves them: its clients reconnect (to
        the next release) instead of seeing the connection drop, and the
        handlers, whose next receive says the client left, can finish.
        """
        for send in list(self.websockets.values()):
            with contextlib.suppress(Exception):  # closed by now, or the client is gone
                await send({"type": "websocket.close", "code": 1001, "reason": GOING_AWAY})

    def cancel(self) -> None:
        """End what is still running (at shutdown, past its bound)."""
        self.cancelled = True
        for task in self.tasks:
            task.cancel()


class RequestLogMiddleware:
    def __init__(
        self, app: ASGIApp, *, access_log_enabled: bool = True, in_flight: InFlight | None = None
    ) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.in_flight = in_flight or InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or new_request_id()
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        started = time.perf_counter()
        status = 0
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        task = asyncio.current_task()
        tasks = self.in_flight.tasks
        tasks.add(task)  # type: ignore[arg-type]  # a request always runs in a task
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client went away before its body arrived: nobody to answer, nothing
            # wrong on our side. Logged as nginx does, 499.
            status = status or CLIENT_CLOSED
        except Exception as exc:
            if status:  # the response had begun: all there is left to do is say why it broke
                error_log.error(
                    "unhandled error in %s %s", scope["method"], scope["path"], exc_info=exc
                )
            else:
                response = http_error_response(exc, scope) or internal_error(exc, scope)
                await response(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if not self.in_flight.cancelled:
                raise
            # Ended by a shutdown past its bound, which said so in the log.
            if status == 0:
                response = error_response(503, "shutting_down", SHUTDOWN_MESSAGE)
                await response(scope, receive, send_with_id)
        finally:
            tasks.discard(task)
            # A proxy's or load balancer's health probe every few seconds would
            # bury real traffic: successful probes are not logged, failures are.
            if self.access_log_enabled and not (status == 200 and scope["path"] in PROBE_PATHS):
                path = scope["path"]
                if scope["query_string"]:
                    path += "?" + scope["query_string"].decode("latin-1")
                elapsed = time.perf_counter() - started
                write_access_line(scope["method"], path, status, size, elapsed, request_id)
            request_id_var.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        task: asyncio.Task[object] = asyncio.current_task()  # type: ignore[assignment]  # it runs in one
        websockets = self.in_flight.websockets

        async def tracked(message: Message) -> None:
            if message["type"] == "websocket.accept":
                websockets[task] = send  # open: a shutdown closes it
            elif message["type"] == "websocket.close":
                websockets.pop(task, None)
            await send(message)

        self.in_flight.tasks.add(task)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not self.in_flight.cancelled:
                raise
            # Ended by a shutdown past its bound: the server closes the connection.
        finally:
            self.in_flight.tasks.discard(task)
            websockets.pop(task, None)
