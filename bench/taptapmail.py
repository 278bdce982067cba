"""taptapmail: POST /send at a fixed rate with the outbox on, on SQLite.

    python bench/taptapmail.py [--rate 200] [--seconds 10]

Open loop: requests start on a fixed schedule whether or not earlier ones
have answered, and each latency counts from its scheduled start, so a stall
shows up in p99 instead of slowing the load down. Every send is a real one:
rate limits checked, the device looked up, the note committed to the outbox
(fsync'd) and delivered by the job worker to the dev transport meanwhile.

The baseline is the same request against a bare Starlette handler that
parses the body and answers 202 without storing anything, at the same rate.
Goal: p99 <= 20 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import uvloop
from _harness import VENV_BIN, free_port, open_loop, post_request, server, wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "taptapmail"
CLIENTS = 40  # devices sending round-robin, each under its 100 sends an hour

BARE = """
import json
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def send(request):
    body = json.loads(await request.body())
    assert body["client_id"] and body["email"]
    return JSONResponse({"status": "queued"}, status_code=202)


async def health(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/send", send, methods=["POST"]), Route("/_health", health)])
"""


def register_clients(base: str) -> list[bytes]:
    """POST /send requests of CLIENTS confirmed devices, each behind an IP of its own
    (X-Forwarded-For from loopback)."""
    bodies = []
    with httpx.Client(base_url=base, timeout=10) as http:
        for n in range(CLIENTS):
            address = f"bench{n}@example.org"
            ip = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
            http.post("/register", json={"email": address, "device_name": "b"}, headers=ip)
            code = None
            for _ in range(100):
                mails = http.get("/_dev/mail").json()["messages"]
                mine = [m for m in mails if m["to"] == [address]]
                if mine:
                    text = http.get(f"/_dev/mail/{mine[0]['id']}").json()["text"]
                    code = next(w for w in text.split() if w.isdigit() and len(w) == 6)
                    break
                time.sleep(0.05)
            assert code, "no confirmation mail"
            confirmed = http.post("/confirm", json={"email": address, "code": code}, headers=ip)
            body = {"client_id": confirmed.json()["client_id"], "email": address, "text": "note"}
            bodies.append(post_request("127.0.0.1", "/send", json.dumps(body).encode(), ip))
    return bodies


def summary(name: str, latencies: list[float], failures: int) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"{name:<28} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   failed {failures}")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "taptapmail"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("data", "__pycache__"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [str(VENV_BIN / "shoestring"), "run", str(project), "--port", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(base + "/_ready")
            bodies = register_clients(base)
            ours = summary(
                "taptapmail POST /send",
                *uvloop.run(open_loop("127.0.0.1", port, bodies, args.rate, args.seconds)),
            )
        finally:
            process.terminate()
            process.wait(10)

        (Path(tmp) / "bare.py").write_text(BARE)
        port = free_port()
        bare_base = f"http://127.0.0.1:{port}"
        bare = [str(VENV_BIN / "uvicorn"), "bare:app", "--port", str(port), "--log-level", "warning",
                "--no-access-log", "--loop", "uvloop"]  # fmt: skip
        with server(bare, bare_base + "/_health", cwd=Path(tmp)):
            baseline = summary(
                "bare Starlette, no storage",
                *uvloop.run(open_loop("127.0.0.1", port, bodies, args.rate, args.seconds)),
            )
    print(
        f"rate {args.rate:.0f}/s for {args.seconds:.0f} s; p99 ratio ours/bare: {ours / baseline:.1f}x; goal p99 <= 20 ms: {'met' if ours <= 20 else 'missed'}"
    )


if __name__ == "__main__":
    main()
