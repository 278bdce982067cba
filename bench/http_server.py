"""The HTTP server under shoestring's App: uvicorn vs. granian, same app, one process each.

    python bench/http_server.py [--seconds 10]

Supports the choice recorded in shoestring/server.py: `shoestring run`
(granian embedded in shoestring's event loop, which the App's services share),
the same App under uvicorn (httptools, uvloop), and under granian's own
command line (one worker). Access log off. Measured with wrk on loopback in
one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import VENV_BIN, free_port, hello_project, server, wrk


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = hello_project(Path(tmp) / "project")
        (project / "shoestring.toml").write_text("[log]\naccess_log = false\n")
        results = {}
        commands = {
            "shoestring run": [str(VENV_BIN / "shoestring"), "run", str(project)],
            "uvicorn": [
                sys.executable, "-m", "uvicorn", "app:app", "--no-access-log",
                "--log-level", "warning", "--app-dir", str(project),
            ],
            "granian": [
                str(VENV_BIN / "granian"), "--interface", "asgi", "--workers", "1",
                "--loop", "uvloop", "--log-level", "warning", "--working-dir", str(project),
                "app:app",
            ],
        }  # fmt: skip
        for name, command in commands.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with server([*command, "--port", str(port)], url + "/_health", cwd=project):
                wrk(url + "/hello", seconds=2)
                results[name] = wrk(url + "/hello", seconds=args.seconds)
    print(f"{'':16} {'requests/s':>12} {'p99 ms':>8} {'x uvicorn':>10}")
    for name, result in results.items():
        ratio = result.requests_per_second / results["uvicorn"].requests_per_second
        print(
            f"{name:16} {result.requests_per_second:>12,.0f} {result.p99_ms:>8.2f} {ratio:>10.2f}"
        )


if __name__ == "__main__":
    main()
