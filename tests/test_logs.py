from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from shoestring import App, Request, Settings
from shoestring.logs import BufferedStreamHandler, JSONFormatter, configure_logging
from shoestring.scrub import MAX_LINE_CHARS, TRUNCATED


class LogStream(io.StringIO):
    """What the log handler wrote, including the lines it holds until its next write."""

    def getvalue(self) -> str:
        for handler in logging.getLogger().handlers:
            handler.flush()
        return super().getvalue()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = LogStream()
    configure_logging("debug", "json", stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_json_with_level_logger_and_extras(log_stream: io.StringIO) -> None:
    logging.getLogger("myapp").warning("queue is %d deep", 7, extra={"queue": "mail"})
    (line,) = lines(log_stream)
    assert line["level"] == "warning"
    assert line["logger"] == "myapp"
    assert line["msg"] == "queue is 7 deep"
    assert line["queue"] == "mail"
    assert str(line["ts"]).endswith("Z")


def test_app_log_lines_are_scrubbed_too(log_stream: io.StringIO) -> None:
    logging.getLogger("myapp").info(
        "signup from %s", "ada@example.org", extra={"user": {"email": "ada@example.org"}}
    )
    assert "ada@example.org" not in log_stream.getvalue()


def test_exceptions_are_logged_scrubbed(log_stream: io.StringIO) -> None:
    try:
        raise KeyError("grace@example.com")
    except KeyError:
        logging.getLogger("myapp").exception("lookup failed")
    (line,) = lines(log_stream)
    assert "KeyError" in str(line["exc"])
    assert "grace@example.com" not in log_stream.getvalue()


def test_access_log_carries_request_id_and_no_personal_data(
    log_stream: io.StringIO, settings: Settings
) -> None:
    app = App("logged", settings=settings)

    @app.route("/register", methods=["POST"])
    async def register(request: Request) -> dict[str, bool]:
        body = await request.json()
        logging.getLogger("logged").info("registering %s", body["email"])
        return {"ok": True}

    with TestClient(app) as client:
        response = client.post(
            "/register?email=ada%40example.org&token=t0ps3cret",
            json={"email": "ada@example.org"},
            headers={"Authorization": "Bearer abc.def.ghi", "Cookie": "sid=xyz789"},
        )
    text = log_stream.getvalue()
    for secret in ("ada@example.org", "ada%40example.org", "t0ps3cret", "abc.def.ghi", "xyz789"):
        assert secret not in text
    access = [line for line in lines(log_stream) if line["logger"] == "shoestring.access"]
    assert len(access) == 1
    assert access[0]["status"] == 200
    assert access[0]["method"] == "POST"
    assert access[0]["request_id"] == response.headers["x-request-id"]
    app_line = next(line for line in lines(log_stream) if line["logger"] == "logged")
    assert app_line["request_id"] == response.headers["x-request-id"]


def test_secret_extras_are_redacted_by_name(log_stream: io.StringIO) -> None:
    logging.getLogger("myapp").info(
        "x",
        extra={
            "password": "P4ss",
            "token": "T0k",
            "api_key": 12345,
            "user": {"name": "ada", "password": "p2", "private_key": ["PK1"]},
            "session": {"id": "S1"},
            "headers": [(b"authorization", b"Token X1"), (b"accept", b"*/*")],
            "secret": "correct horse battery staple",
            "code": None,
        },
    )
    (line,) = lines(log_stream)
    assert line["password"] == line["token"] == line["api_key"] == "[redacted]"
    assert line["user"] == {"name": "ada", "password": "[redacted]", "private_key": "[redacted]"}
    assert line["session"] == line["secret"] == "[redacted]"
    assert line["headers"] == [["b'authorization'", "[redacted]"], ["b'accept'", "b'*/*'"]]
    assert line["code"] is None
    for secret in ("P4ss", "T0k", "12345", "p2", "PK1", "S1", "X1", "horse"):
        assert secret not in log_stream.getvalue()


def test_long_access_paths_are_cut_and_stay_valid_json(
    log_stream: io.StringIO, client: TestClient
) -> None:
    client.get("/x?token=SECRET&q=" + "a" * (MAX_LINE_CHARS + 100))
    (access,) = [line for line in lines(log_stream) if line["logger"] == "shoestring.access"]
    assert str(access["path"]).startswith("/x?token=[redacted]&q=aaa")
    assert str(access["path"]).endswith(TRUNCATED)
    assert "SECRET" not in log_stream.getvalue()


def test_console_format_redacts_secret_extras_whole(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    try:
        logging.getLogger("myapp").info(
            "signed in", extra={"password": "correct horse", "user": {"token": "a b"}}
        )
    finally:
        logging.getLogger().handlers.clear()
    assert "password=[redacted] user={'token': '[redacted]'}" in stream.getvalue()
    assert "horse" not in stream.getvalue()


def test_console_format_is_scrubbed(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    try:
        logging.getLogger("myapp").info("mail to bob@example.net", extra={"token": "abc"})
    finally:
        logging.getLogger().handlers.clear()
    assert "bob@example.net" not in stream.getvalue()
    assert "myapp: mail to [email]" in stream.getvalue()


def test_access_lines_stay_valid_json_for_hostile_paths(
    log_stream: io.StringIO, client: TestClient
) -> None:
    client.get('/a"b\\c/\u00fc?q="x"&e=ada@example.org')
    (access,) = [line for line in lines(log_stream) if line["logger"] == "shoestring.access"]
    assert str(access["path"]).startswith('/a"b\\c/\u00fc?q=')
    assert str(access["path"]).endswith("&e=[email]")
    assert access["msg"] == f"GET {access['path']} 404"


def test_successful_health_probes_are_not_logged_but_failures_are(
    log_stream: io.StringIO, app: App
) -> None:
    from shoestring import Health

    class Flaky:
        name = "flaky"
        ok = True

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def health(self) -> Health:
            return Health(ok=self.ok, detail="" if self.ok else "down")

    flaky = Flaky()
    app.services.add(flaky)
    with TestClient(app) as client:
        assert client.get("/_health").status_code == 200
        assert client.get("/_ready").status_code == 200
        flaky.ok = False
        assert client.get("/_ready").status_code == 503
        client.get("/elsewhere")
    access = [line["msg"] for line in lines(log_stream) if line["logger"] == "shoestring.access"]
    assert access == ["GET /_ready 503", "GET /elsewhere 404"]


class Writes(io.StringIO):
    """A stream that remembers each write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def logging_to() -> Iterator[Callable[[float], Writes]]:
    """Configure JSON logging onto a new Writes stream, flushed every `interval` seconds."""
    patch = pytest.MonkeyPatch()

    def configure(interval: float) -> Writes:
        patch.setattr(BufferedStreamHandler, "FLUSH_INTERVAL", interval)
        stream = Writes()
        configure_logging("info", "json", stream=stream)
        return stream

    yield configure
    logging.getLogger().handlers.clear()
    patch.undo()


def test_info_lines_go_out_together_and_a_warning_takes_them_along_at_once(
    logging_to: Callable[[float], Writes],
) -> None:
    stream = logging_to(60.0)
    log = logging.getLogger("myapp")
    log.info("first")
    log.info("second")
    assert stream.writes == []  # held: one write(2) per line is what they save
    log.warning("third")
    assert len(stream.writes) == 1
    assert [json.loads(line)["msg"] for line in stream.writes[0].splitlines()] == [
        "first",
        "second",
        "third",
    ]


def test_held_lines_are_written_within_the_flush_interval(
    logging_to: Callable[[float], Writes],
) -> None:
    stream = logging_to(0.05)
    logging.getLogger("myapp").info("quiet moment")
    deadline = time.monotonic() + 5
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "quiet moment" in stream.getvalue()


def test_reconfiguring_logging_writes_what_the_old_handler_held(
    logging_to: Callable[[float], Writes],
) -> None:
    first = logging_to(60.0)
    logging.getLogger("myapp").info("before")
    logging_to(60.0)
    assert "before" in first.getvalue()


def test_a_closed_handler_stops_flushing_without_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    before = {t for t in threading.enumerate() if t.name == "log-flush"}
    handler = BufferedStreamHandler(io.StringIO(), JSONFormatter())
    (flusher,) = {t for t in threading.enumerate() if t.name == "log-flush"} - before
    handler.close()
    flusher.join(5)
    assert not flusher.is_alive()
    # What the flusher runs next if close() came while it was writing: it must end, quietly.
    handler._flush_until_closed()
    assert failures == []


def test_timestamps_are_utc_to_the_millisecond_across_second_boundaries() -> None:
    formatter = JSONFormatter()
    start = 1_780_000_000.0
    # Many lines a millisecond, then the next millisecond, second and minute.
    for offset in [0.0004, 0.0009, 0.001, 0.5, 0.999, 1.0, 1.0005, 59.9995, 60.0, 3600.25]:
        created = start + offset
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert formatter.timestamp(created) == expected.replace("+00:00", "Z")


class StuckStream(io.StringIO):
    """A reader of stdout that stops reading (journald busy, a full pipe) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().write(text)


def test_a_request_logs_on_while_a_write_is_stuck() -> None:
    stream = StuckStream()
    handler = BufferedStreamHandler(stream, JSONFormatter())
    try:
        handler.write_line("first")
        stuck = threading.Thread(target=handler.flush)  # as the flush thread would
        stuck.start()
        assert stream.entered.wait(5)
        appended = threading.Thread(target=handler.write_line, args=("second",))
        appended.start()
        appended.join(1)
        assert not appended.is_alive(), "writing a log line waited for a stuck stream"
        stream.release.set()
        stuck.join(5)
    finally:
        stream.release.set()
        handler.close()
    assert stream.getvalue().splitlines() == ["first", "second"]
