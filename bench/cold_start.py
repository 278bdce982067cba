"""Cold start: wall time from process start to the first 200 on /_health.

    python bench/cold_start.py [--runs 10]

`shoestring run` of a fresh project (which also opens its SQLite database)
vs. a bare Starlette app under `python -m uvicorn`, in the same run.
Goal: <= 1.0 s for shoestring (a Lambda cold start is around 5 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BARE_STARLETTE, VENV_BIN, free_port, hello_project, wait_for


def cold_start(command: Sequence[str], url: str) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = hello_project(Path(tmp) / "project")
        (Path(tmp) / "bare.py").write_text(BARE_STARLETTE)
        timings: dict[str, list[float]] = {"shoestring run": [], "bare uvicorn + Starlette": []}
        for _ in range(args.runs):
            port = free_port()
            timings["shoestring run"].append(
                cold_start(
                    [str(VENV_BIN / "shoestring"), "run", str(project), "--port", str(port)],
                    f"http://127.0.0.1:{port}/_health",
                )
            )
            port = free_port()
            timings["bare uvicorn + Starlette"].append(
                cold_start(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "bare:app",
                        "--port",
                        str(port),
                        "--app-dir",
                        tmp,
                    ],
                    f"http://127.0.0.1:{port}/_health",
                )
            )
    print(f"{'':26} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in timings.items():
        print(
            f"{name:26} {statistics.median(values):>9.3f} {min(values):>7.3f} {max(values):>7.3f}"
        )
    ours = statistics.median(timings["shoestring run"])
    bare = statistics.median(timings["bare uvicorn + Starlette"])
    print(f"ratio {ours / bare:.2f} x bare uvicorn; shoestring median {ours:.3f} s (goal <= 1.0 s)")


if __name__ == "__main__":
    main()
