"""The HTTP server under shoestring's App: uvicorn vs. granian, same app, one process each.

    python bench/http_server.py [--seconds 10]

Supports the choice recorded in shoestring/server.py. uvicorn runs inside
shoestring's own event loop (so services share it); granian would need its own
process model. Measured with wrk on loopback in one run.
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
        for name in ("uvicorn", "granian"):
            port = free_port()
            if name == "uvicorn":
                command = [
                    sys.executable, "-m", "uvicorn", "app:app", "--port", str(port),
                    "--no-access-log", "--log-level", "warning", "--app-dir", str(project),
                ]  # fmt: skip
            else:
                command = [
                    str(VENV_BIN / "granian"), "--interface", "asgi", "--port", str(port),
                    "--workers", "1", "--loop", "uvloop", "--log-level", "warning",
                    "--working-dir", str(project), "app:app",
                ]  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            with server(command, url + "/_health", cwd=project):
                wrk(url + "/hello", seconds=2)
                results[name] = wrk(url + "/hello", seconds=args.seconds)
    print(f"{'':10} {'requests/s':>12} {'p99 ms':>8}")
    for name, result in results.items():
        print(f"{name:10} {result.requests_per_second:>12,.0f} {result.p99_ms:>8.2f}")
    ratio = results["granian"].requests_per_second / results["uvicorn"].requests_per_second
    print(f"ratio granian/uvicorn {ratio:.2f}")


if __name__ == "__main__":
    main()
