"""Object storage: anonymous GET through the S3 API vs. nginx, and signed boto3 GET/PUT.

    python bench/storage.py [--seconds 10] [--connections 64]

(a) A 1 KiB and a 10 MiB object in a public-read bucket, fetched without
signing by wrk from `shoestring run` (as deployed: access log on, fs backend,
fsync on), and the same bytes as plain files from nginx (Debian's package,
run here with a generated config on a free port). Goals: >= 0.25 x nginx
requests/s for 1 KiB, >= 0.65 x nginx throughput for 10 MiB.
(b) Signed GET and PUT of 1 KiB and 10 MiB objects from concurrent boto3
clients (threads), requests/s and MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from _harness import VENV_BIN, free_port, hello_project, server, timed_threads, wrk
from botocore.config import Config

KIB, MIB = 1024, 1024 * 1024
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /_health {{ return 200 "ok"; }}
    }}
}}
"""


def nginx_binary() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        raise SystemExit("nginx is needed: apt-get install nginx")
    return path


def client(url: str, key: dict[str, str]) -> object:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"}, signature_version="s3v4", max_pool_connections=64
        ),
    )


def boto3_rates(
    url: str, key: dict[str, str], size: int, clients: int, total: int
) -> dict[str, float]:
    body = os.urandom(size)
    per_client = max(1, total // clients)
    s3s = [client(url, key) for _ in range(clients)]
    s3s[0].put_object(Bucket="bench", Key=f"signed/{size}", Body=body)  # type: ignore[attr-defined]

    def puts(i: int) -> None:
        for n in range(per_client):
            s3s[i].put_object(Bucket="bench", Key=f"put/{size}/{i}/{n}", Body=body)  # type: ignore[attr-defined]

    def gets(i: int) -> None:
        for _ in range(per_client):
            s3s[i].get_object(Bucket="bench", Key=f"signed/{size}")["Body"].read()  # type: ignore[attr-defined]

    results = {}
    for name, work in (("put", puts), ("get", gets)):
        seconds = timed_threads(clients, work)
        count = per_client * clients
        results[name] = count / seconds
        results[name + "_mbs"] = count * size / seconds / MIB
    return results


def measure(seconds: int, connections: int, clients: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as another user and must read the files
        project = hello_project(tmp / "project")
        files = tmp / "www" / "_s3" / "bench"
        files.mkdir(parents=True)
        small, large = os.urandom(KIB), os.urandom(10 * MIB)
        (files / "small").write_bytes(small)
        (files / "large").write_bytes(large)
        made = subprocess.run(
            [str(VENV_BIN / "shoestring"), "keys", "create", "--json", "--project", str(project)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        key = json.loads(made.stdout)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [str(VENV_BIN / "shoestring"), "run", str(project), "--port", str(port)]
        results: dict[str, object] = {}
        with server(command, url + "/_health"):
            s3 = client(url + "/_s3", key)
            s3.create_bucket(Bucket="bench", ACL="public-read")  # type: ignore[attr-defined]
            s3.put_object(Bucket="bench", Key="small", Body=small)  # type: ignore[attr-defined]
            s3.put_object(Bucket="bench", Key="large", Body=large)  # type: ignore[attr-defined]
            for name in ("small", "large"):
                target = f"{url}/_s3/bench/{name}"
                wrk(target, seconds=2, connections=connections)
                results[f"ours_{name}"] = wrk(target, seconds=seconds, connections=connections)
            for size, total in ((KIB, 2000), (10 * MIB, 80)):
                results[f"boto3_{size}"] = boto3_rates(url + "/_s3", key, size, clients, total)
        nginx_port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, root=tmp / "www"))
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        with server([nginx_binary(), "-c", str(conf)], nginx_url + "/_health"):
            for name in ("small", "large"):
                target = f"{nginx_url}/_s3/bench/{name}"
                wrk(target, seconds=2, connections=connections)
                results[f"nginx_{name}"] = wrk(target, seconds=seconds, connections=connections)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    r = measure(args.seconds, args.connections, args.clients)
    print(f"{'anonymous GET':<22} {'shoestring req/s':>18} {'nginx req/s':>12} {'ratio':>6}")
    for name, label, size in (("small", "1 KiB", KIB), ("large", "10 MiB", 10 * MIB)):
        ours, nginx = r[f"ours_{name}"], r[f"nginx_{name}"]
        ratio = ours.requests_per_second / nginx.requests_per_second  # type: ignore[attr-defined]
        print(
            f"{label:<22} {ours.requests_per_second:>18,.0f} {nginx.requests_per_second:>12,.0f} {ratio:>6.2f}"  # type: ignore[attr-defined]
            f"   ({ours.requests_per_second * size / MIB:,.0f} vs {nginx.requests_per_second * size / MIB:,.0f} MB/s;"  # type: ignore[attr-defined]
            f" p99 {ours.p99_ms:.1f} vs {nginx.p99_ms:.1f} ms)"  # type: ignore[attr-defined]
        )
    print(f"\nsigned boto3, {args.clients} client threads")
    for size, label in ((KIB, "1 KiB"), (10 * MIB, "10 MiB")):
        rates = r[f"boto3_{size}"]
        assert isinstance(rates, dict)
        print(
            f"{label:<8} PUT {rates['put']:>8,.1f} req/s {rates['put_mbs']:>8,.1f} MB/s   "
            f"GET {rates['get']:>8,.1f} req/s {rates['get_mbs']:>8,.1f} MB/s"
        )


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    main()
