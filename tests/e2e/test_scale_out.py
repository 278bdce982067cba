"""Scale-out: two `shoestring run` nodes on one PostgreSQL and one S3 service, behind Caddy.

The nodes share nothing but the database, the S3 service and the storage
key file (docs/runtime.md, "Several nodes"); Caddy spreads requests over
them round robin. Whatever a user does through the proxy must behave as one
app: what one node writes, the other reads; each job runs once; an access
key made on one node signs requests the other accepts; and when a node dies,
the proxy's retries keep requests answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from shoestring.cli.project import create_project
from tests.e2e.conftest import Server, run_cli

pytestmark = pytest.mark.e2e

APP = """
import os

from shoestring import App, Request
from shoestring.storage import ObjectEvent

app = App("fleet")
notes = app.table("notes")
runs = app.table("runs")
files = app.storage.bucket("files")


@app.route("/notes/{id}", methods=["PUT"])
async def put_note(request: Request) -> dict[str, object]:
    await notes.put({"id": request.path_params["id"], "text": (await request.body()).decode()})
    return {"node": os.getpid()}


@app.route("/notes/{id}")
async def get_note(request: Request) -> dict[str, object]:
    item = await notes.get(request.path_params["id"])
    return {"text": item and item["text"], "node": os.getpid()}


@app.route("/files/{key}", methods=["PUT"])
async def put_file(request: Request) -> dict[str, object]:
    await files.put(request.path_params["key"], await request.body())
    return {"node": os.getpid()}


@app.route("/files/{key}")
async def get_file(request: Request) -> dict[str, object]:
    return {"text": (await files.read(request.path_params["key"])).decode(), "node": os.getpid()}


@app.job(name="count")
async def count(n: int) -> None:
    await runs.update(f"job-{n}", increment={"runs": 1})


@app.route("/count/{n}", methods=["POST"])
async def enqueue(request: Request) -> dict[str, object]:
    await count.enqueue(int(request.path_params["n"]))
    return {"node": os.getpid()}


@app.route("/runs")
async def all_runs(request: Request) -> dict[str, int]:
    page = await runs.scan(limit=1000)
    return {item["id"]: item["runs"] for item in page.items}


@files.on_put("uploads/*")
async def uploaded(event: ObjectEvent) -> None:
    await runs.update(event.key, increment={"runs": 1})
"""

CADDY_SITE = """:80 {{
\treverse_proxy {upstreams} {{
\t\tlb_policy round_robin
\t\tlb_try_duration 5s
\t\tfail_duration 30s
\t}}
}}
"""


@pytest.fixture
def nodes(
    tmp_path: Path, postgres_url: str
) -> Iterator[Callable[[int], tuple[list[Server], Path]]]:
    """`nodes(2)`: an S3 service, then that many nodes configured to share it and PostgreSQL."""
    started: list[Server] = []

    def start(count: int) -> tuple[list[Server], Path]:
        peer_dir = tmp_path / "s3-service"
        create_project(peer_dir)
        peer = Server(peer_dir)
        started.append(peer)
        peer.wait_ready("/_ready")
        made = run_cli(peer_dir, "keys", "create", "--json")
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)
        shared_key_file = tmp_path / "shared" / "storage-secret.key"
        config = (
            '[project]\nname = "fleet"\napp = "app:app"\n\n'
            f'[database]\nurl = "{postgres_url}"\n\n'
            '[storage]\nbackend = "s3"\n'
            f'endpoint = "{peer.base_url}/_s3"\n'
            f'access_key_id = "{key["access_key_id"]}"\n'
            f'secret_access_key = "{key["secret_access_key"]}"\n'
            'bucket_prefix = "fleet-"\n'
            f'secret_key_file = "{shared_key_file}"\n\n'
            "[jobs]\npoll_interval = 0.1\nconcurrency = 4\n"
        )
        servers = []
        for n in range(count):
            directory = tmp_path / f"node{n}"
            create_project(directory)
            (directory / "app.py").write_text(APP)
            (directory / "shoestring.toml").write_text(config)
            servers.append(Server(directory))
            started.append(servers[-1])
        for server in servers:  # started together, as a fleet restarts
            server.wait_ready("/_ready", timeout=30)
        return servers, servers[0].project

    yield start
    for server in started:
        server.kill()


def s3_through(proxy: str, project: Path) -> Any:
    made = run_cli(project, "keys", "create", "--bucket", "files", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    return boto3.client(
        "s3",
        endpoint_url=proxy + "/_s3",
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def wait_for(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_two_nodes_behind_a_proxy_behave_as_one_app(
    nodes: Callable[[int], tuple[list[Server], Path]],
    caddy: Callable[[str], str],
) -> None:
    servers, first = nodes(2)
    upstreams = " ".join(f"127.0.0.1:{server.port}" for server in servers)
    proxy = caddy(CADDY_SITE.format(upstreams=upstreams))
    seen: set[int] = set()

    with httpx.Client(base_url=proxy, timeout=10) as http:

        def call(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
            response = http.request(method, path, content=body)
            assert response.status_code == 200, response.text
            data: dict[str, Any] = response.json()
            seen.add(data.pop("node", 0))
            return data

        # What one node writes, the next request (on the other node) reads.
        for n in range(10):
            call("PUT", f"/notes/n{n}", f"note {n}".encode())
            call("PUT", f"/files/f{n}", f"file {n}".encode())
        for n in range(10):
            assert call("GET", f"/notes/n{n}") == {"text": f"note {n}"}
            assert call("GET", f"/files/f{n}") == {"text": f"file {n}"}
        assert len(seen) == 2, "the proxy should have spread requests over both nodes"

        # Jobs enqueued on either node run once, on whichever node claims them.
        for n in range(40):
            call("POST", f"/count/{n}")
        wait_for(lambda: len([k for k in call("GET", "/runs") if k.startswith("job-")]) == 40)

        # An access key made with the CLI on one node signs requests either node checks;
        # every upload's trigger runs once.
        s3 = s3_through(proxy, first)
        for n in range(10):
            s3.put_object(Bucket="files", Key=f"uploads/u{n}", Body=b"x" * n)
        listed = s3.list_objects_v2(Bucket="files", Prefix="uploads/")
        assert [item["Key"] for item in listed["Contents"]] == [f"uploads/u{n}" for n in range(10)]
        wait_for(lambda: len([k for k in call("GET", "/runs") if k.startswith("uploads/")]) == 10)
        time.sleep(1.0)  # a second run of any job would show by now
        counts = call("GET", "/runs")
        assert counts == {
            **{f"job-{n}": 1 for n in range(40)},
            **{f"uploads/u{n}": 1 for n in range(10)},
        }

        # A node dies without warning: the proxy retries on the other, nothing fails.
        servers[1].kill()
        for n in range(10):
            assert call("GET", f"/notes/n{n}") == {"text": f"note {n}"}
            assert s3.get_object(Bucket="files", Key=f"uploads/u{n}")["Body"].read() == b"x" * n
    assert servers[0].terminate() == 0
