"""Shared by the HTTP benchmarks: free ports, servers in subprocesses, wrk runs."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Counter:
    """An aiosmtpd handler that accepts every message and counts them."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 OK"


def wait_for(url: str, timeout: float = 20.0) -> float:
    """Seconds until `url` answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def server(
    command: Sequence[str], url: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(url)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p99_ms: float


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, *, seconds: int, connections: int = 64, threads: int = 2) -> LoadResult:
    """Closed-loop GETs of `url`: wrk if installed, else `python_load` (slower, noted once)."""
    global _WARNED
    if shutil.which("wrk") is None:
        if not _WARNED:
            print(
                "wrk not found: loading with a Python client, which tops out well below "
                "wrk and caps every server alike (apt-get install wrk for figures "
                "comparable to docs/benchmarks.md)",
                file=sys.stderr,
            )
            _WARNED = True
        return python_load(url, seconds=seconds, connections=connections, processes=threads)
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert p99 is not None, output
    return LoadResult(rps, _ms(p99.group(1), p99.group(2)))


_WARNED = False


def python_load(url: str, *, seconds: int, connections: int, processes: int) -> LoadResult:
    """wrk's measurement without wrk: `connections` keep-alive GET loops over `processes`."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
    target = (parts.hostname or "127.0.0.1", parts.port or 80, request, seconds)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.starmap(_load_in_process, [(*target, n) for n in share])
    latencies = sorted(ms for _, sample in results for ms in sample)
    answered = sum(count for count, _ in results)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return LoadResult(answered / seconds, p99)


def _load_in_process(
    host: str, port: int, request: bytes, seconds: float, connections: int
) -> tuple[int, list[float]]:
    import asyncio

    async def loop(deadline: float, latencies: list[float]) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        answered = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            await _read_response(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            answered += 1
        writer.close()
        return answered

    async def main() -> tuple[int, list[float]]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(*(loop(deadline, latencies) for _ in range(connections)))
        return sum(counts), latencies

    gc.disable()  # as wrk: no collector pauses counted as the server's
    return asyncio.run(main())


async def _read_response(reader: Any) -> None:
    """Read one HTTP/1.1 response: a Content-Length body or a chunked one."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = _CONTENT_LENGTH.search(head)
    if length:
        await reader.readexactly(int(length.group(1)))
    elif b"chunked" in head.lower():
        while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def post_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive POST of a JSON body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_loop(
    host: str, port: int, requests: Sequence[bytes], rate: float, seconds: float
) -> tuple[list[float], int]:
    """Send `requests` round-robin at `rate` a second; latencies (ms) and non-2xx count.

    Open loop: each request starts on its schedule whether or not earlier ones
    have answered (on an idle keep-alive connection, or a new one), and its
    latency counts from that scheduled start, so a server stall shows in the
    tail instead of slowing the load down. Raw sockets on the client side cost
    a few microseconds a request: an HTTP client library's own queueing would
    be measured otherwise.
    """
    import asyncio

    latencies: list[float] = []
    failures = 0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        return reader, writer

    async def one(scheduled: float, request: bytes) -> None:
        nonlocal failures
        reader, writer = idle.pop() if idle else await connect()
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed a connection idle past its keep-alive timeout.
            reader, writer = await connect()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        failures += head[9:10] != b"2"
        idle.append((reader, writer))

    tasks = []
    # The load generator's own garbage collections would count as server
    # latency: none run while it measures (wrk has no collector either).
    gc.collect()
    gc.disable()
    start = time.perf_counter() + 0.1
    try:
        for n in range(int(rate * seconds)):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled, requests[n % len(requests)])))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    for writer in opened:
        writer.close()
    return latencies, failures


def hello_project(directory: Path) -> Path:
    """A project whose one route answers {"hello": "world"}, as `shoestring new` would lay it out."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(
        "from shoestring import App, Request\n\n"
        'app = App("bench")\n\n\n'
        '@app.route("/hello")\n'
        "async def hello(request: Request) -> dict[str, str]:\n"
        '    return {"hello": "world"}\n'
    )
    return directory


BARE_STARLETTE = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": "world"})


async def health(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/hello", hello), Route("/_health", health)])
"""


POSTGRES = os.environ.get("SHOESTRING_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def timed_threads(clients: int, work: Callable[[int], None]) -> float:
    """Seconds `clients` threads take to run `work(index)` each."""
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
