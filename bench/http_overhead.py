"""shoestring's HTTP overhead: `@app.route` under `shoestring run` vs. bare Starlette.

    python bench/http_overhead.py [--seconds 5] [--rounds 3] [--connections 64]

The same hello handler, served (a) by `shoestring run` as deployed (request
ids, JSON access log on, to /dev/null here, to journald in production), (a')
the same with `log.access_log = false`, and (b) by a bare Starlette app on
the same server, granian, with the same options (uvloop, HTTP/1, one worker,
no access log); for scale, (b') the same with granian's access log, and (c)
the bare app under uvicorn (httptools, uvloop, no access log). Load from wrk
on loopback, in one run: the servers take turns, --rounds times, and each
one's median run is reported, so drift in a shared machine's speed hits all
alike. Goal: shoestring >= 0.9 x bare Starlette.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BARE_STARLETTE, VENV_BIN, LoadResult, free_port, hello_project, server, wrk


def measure(seconds: int, connections: int, rounds: int) -> list[LoadResult]:
    """Each server's median over `rounds` runs, taken in turn so drift hits all alike."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as running:
        project = hello_project(Path(tmp) / "project")
        quiet = hello_project(Path(tmp) / "quiet")
        (quiet / "shoestring.toml").write_text("[log]\naccess_log = false\n")
        (Path(tmp) / "bare.py").write_text(BARE_STARLETTE)
        shoestring = [str(VENV_BIN / "shoestring"), "run"]
        granian = [
            str(VENV_BIN / "granian"), "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
            "--http", "1", "--log-level", "warning", "--working-dir", tmp,
        ]  # fmt: skip
        uvicorn = [
            sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning",
            "--app-dir", tmp,
        ]  # fmt: skip
        commands = [
            lambda port: [*shoestring, str(project), "--port", str(port)],
            lambda port: [*shoestring, str(quiet), "--port", str(port)],
            lambda port: [*granian, "--port", str(port), "bare:app"],
            lambda port: [*granian, "--access-log", "--port", str(port), "bare:app"],
            lambda port: [*uvicorn, "--port", str(port), "bare:app"],
        ]
        urls = []
        for command in commands:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            running.enter_context(server(command(port), url + "/_health", cwd=Path(tmp)))
            wrk(url + "/hello", seconds=2, connections=connections)  # warm-up
            urls.append(url + "/hello")
        runs: list[list[LoadResult]] = [[] for _ in urls]
        for _ in range(rounds):
            for url, results in zip(urls, runs, strict=True):
                results.append(wrk(url, seconds=seconds, connections=connections))
        return [
            LoadResult(
                statistics.median(r.requests_per_second for r in results),
                statistics.median(r.p99_ms for r in results),
            )
            for results in runs
        ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, taken in turn")
    args = parser.parse_args()
    ours, quiet, bare, logged, uvicorn = measure(args.seconds, args.connections, args.rounds)
    rows = (
        ("shoestring, access log on", ours),
        ("shoestring, access log off", quiet),
        ("bare Starlette on granian", bare),
        ("bare Starlette, granian's access log", logged),
        ("bare Starlette on uvicorn", uvicorn),
    )
    print(f"{'':38} {'requests/s':>12} {'p99 ms':>8} {'ratio':>6}")
    for name, result in rows:
        ratio = result.requests_per_second / bare.requests_per_second
        print(f"{name:38} {result.requests_per_second:>12,.0f} {result.p99_ms:>8.2f} {ratio:>6.2f}")
    print("goal: shoestring >= 0.90 x bare Starlette")


if __name__ == "__main__":
    main()
