"""Structured logs: one JSON object per line on stdout, scrubbed of personal data.

`configure_logging` installs one handler on the root logger, so the HTTP
server's, shoestring's and the app's own log lines share the format, the request id
and the scrubber. Fields passed with `extra={...}` become keys of the line.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import re
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, Literal

from shoestring.scrub import REDACTED, is_secret_name, scrub

request_id_var: ContextVar[str | None] = ContextVar("shoestring_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


def _logger_name(record: logging.LogRecord) -> str:
    # granian logs as "_granian" (after its Rust module) and "_granian.utils".
    return "granian" if record.name.startswith("_granian") else record.name


def _scrub_field(name: str, value: Any) -> Any:
    # A secret's value is hidden whole, whatever it is: `scrub` could only
    # find it by a name, and a value alone carries none.
    if value is not None and not isinstance(value, bool) and is_secret_name(name):
        return REDACTED
    return _scrub_value(value)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(k): _scrub_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str | bytes):
            # A (name, value) pair, as ASGI headers and form fields come.
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            return [_scrub_value(value[0]), _scrub_field(name, value[1])]
        return [_scrub_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, extras, exc."""

    # (second, its text) and (millisecond, its text), each swapped in whole,
    # since any thread may call this without holding a lock.
    _second: tuple[int, str] = (-1, "")
    _millis: tuple[int, str] = (-1, "")

    def timestamp(self, created: float) -> str:
        # The access log writes many lines a millisecond: format each one once.
        millis = int(created * 1000)
        cached, text = self._millis
        if millis == cached:
            return text
        second, fraction = divmod(millis, 1000)
        cached, stamp = self._second
        if second != cached:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        text = f"{stamp}.{fraction:03d}Z"
        self._millis = (millis, text)
        return text

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": _logger_name(record),
            "msg": scrub(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in _extra_fields(record).items():
            line.setdefault(key, _scrub_field(key, value))
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """Readable lines for a terminal (`shoestring dev`), scrubbed the same way."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={_scrub_field(k, v)}" for k, v in _extra_fields(record).items())
        text = f"{stamp} {record.levelname:<7} {_logger_name(record)}: {record.getMessage()}"
        if extras:
            text += f"  {extras}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text)


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Collects lines and writes them together at most every FLUSH_INTERVAL seconds.

    Written as it comes, each access line is a system call per request (to
    journald's socket, in production), and the stream's own buffering cannot
    be relied on: PYTHONUNBUFFERED, which systemd units and containers set so
    that nothing sits in a buffer, makes stdout write every line at once.
    Warnings and errors are written at once, with whatever waits before them;
    a crash loses at most the last FLUSH_INTERVAL of info lines; an orderly
    exit writes everything (logging flushes handlers at exit).
    """

    FLUSH_INTERVAL = 0.2
    MAX_PENDING = 64 * 1024  # characters held before a write regardless of the interval

    def __init__(self, stream: Any, formatter: JSONFormatter) -> None:
        super().__init__(stream)
        self.setFormatter(formatter)
        self.json_formatter = formatter
        # A deque: appending needs no lock, so a request never waits while
        # the flush thread's write is blocked on a slow reader of stdout.
        self._pending: collections.deque[str] = collections.deque()
        self._pending_size = 0  # about: only decides when to write before the interval
        # Not `_closed`: logging.Handler keeps a bool of that name and sets it in close().
        self._stop_flushing = threading.Event()
        threading.Thread(target=self._flush_until_closed, daemon=True, name="log-flush").start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def write_line(self, line: str) -> None:
        self._pending.append(line)
        self._pending_size += len(line)
        if self._pending_size >= self.MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            if pending:
                self._pending_size = 0
                lines = [pending.popleft() for _ in range(len(pending))]
                self.stream.write(self.terminator.join(lines) + self.terminator)
            if hasattr(self.stream, "flush"):
                self.stream.flush()

    def close(self) -> None:
        self.flush()
        self._stop_flushing.set()
        super().close()

    def _flush_until_closed(self) -> None:
        while not self._stop_flushing.wait(self.FLUSH_INTERVAL):
            # A closed or broken stream has nowhere to write to, and nowhere to say so.
            with contextlib.suppress(Exception):
                self.flush()


_json_handler: BufferedStreamHandler | None = None
# [_json_handler] while shoestring owns the root logger's handlers, else [].
_json_only: list[logging.Handler] = []
_root = logging.getLogger()
_access = logging.getLogger("shoestring.access")
# Printable ASCII but `"` and `\\`: a path JSON would not escape (nearly all of them).
_JSON_SAFE = re.compile(r"[ !#-\[\]-~]*")


def write_access_line(
    method: str, path: str, status: int, size: int, seconds: float, request_id: str | None
) -> None:
    """One access-log line, as `shoestring.access` would log it, at a fraction of the cost.

    When shoestring owns the JSON output (the production default) the line is
    built and written directly: a LogRecord, its caller lookup and the generic
    formatter cost more than the rest of a small request. Otherwise (console
    format, logging configured by the app) it goes through `logging`.
    """
    if _access.disabled or not _access.isEnabledFor(logging.INFO):
        return
    path = scrub(path)
    handler = _json_handler
    if handler is None or _root.handlers != _json_only:
        ms = round(seconds * 1000, 2)
        fields = {"method": method, "path": path, "status": status, "bytes": size, "ms": ms}
        _access.info("%s %s %d", method, path, status, extra=fields)
        return
    # Only the path may need JSON escaping: the method is a token, the request
    # id a checked token, the rest numbers.
    quoted = path if _JSON_SAFE.fullmatch(path) else json.dumps(path, ensure_ascii=False)[1:-1]
    rid = f'"request_id": "{request_id}", ' if request_id is not None else ""
    handler.write_line(
        f'{{"ts": "{handler.json_formatter.timestamp(time.time())}", "level": "info", '
        f'"logger": "shoestring.access", "msg": "{method} {quoted} {status}", {rid}'
        f'"method": "{method}", "path": "{quoted}", "status": {status}, "bytes": {size}, '
        f'"ms": {seconds * 1000:.2f}}}'
    )


def configure_logging(
    level: str = "info", fmt: Literal["json", "console"] = "json", stream: Any = None
) -> None:
    """Route every logger through one scrubbed handler on stdout."""
    # No line carries the caller's file, thread or process: skipping them saves
    # a stack walk and several lookups per record (a third of an access-log line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _json_handler, _json_only
    handler: logging.Handler
    if fmt == "json":
        handler = _json_handler = BufferedStreamHandler(stream or sys.stdout, JSONFormatter())
        _json_only = [handler]
    else:
        # A person reads these as they come: no holding lines back.
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(ConsoleFormatter())
        _json_handler, _json_only = None, []
    for existing in list(_root.handlers):
        existing.flush()
        _root.removeHandler(existing)
        if isinstance(existing, BufferedStreamHandler):
            existing.close()
    _root.addHandler(handler)
    _root.setLevel(level.upper())
    watchfiles = logging.getLogger("watchfiles")
    watchfiles.handlers.clear()
    watchfiles.propagate = True
    logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
