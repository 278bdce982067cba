"""Static files: shoestring's site path vs. nginx and Caddy serving the same directory.

    python bench/sites.py [--seconds 8]

A 1 KiB and a 1 MiB file, each server one process/worker where it has a
choice (nginx: 1 worker; Caddy: its Go runtime, with the config `shoestring
sites caddyfile` renders, as a deploy installs it; shoestring: `shoestring run`
with the access log off, as a CDN-fronted site would run), wrk on loopback.
`shoestring-bucket` serves the same files published into a bucket of the fs
storage backend (`[sites.www] bucket`), from its in-memory cache.
Goals: >= 0.25 x nginx requests/s for 1 KiB, >= 0.65 x for 1 MiB; the
bucket site within 10% of the directory site.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import VENV_BIN, LoadResult, free_port, server, wrk

FILES = {"small.bin": 1024, "large.bin": 1024 * 1024}


def nginx_command(root: Path, port: int, work: Path) -> list[str]:
    config = work / "nginx.conf"
    config.write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {work};\n"
        f"  proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    return ["nginx", "-c", str(config), "-p", str(work)]


def shoestring_command(project: Path, port: int) -> list[str]:
    return [str(VENV_BIN / "shoestring"), "run", str(project), "--port", str(port)]


def caddy_command(project: Path, port: int, work: Path) -> list[str]:
    """Caddy with the config shoestring renders for the project (what a deploy installs)."""
    site = subprocess.run(
        [str(VENV_BIN / "shoestring"), "sites", "caddyfile", "--project", str(project),
         "--address", f":{port}", "--upstream", "127.0.0.1:9"],  # files only: no app behind
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    config = work / "Caddyfile"
    config.write_text("{\n\tadmin off\n}\n" + site)
    return ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is needed: apt-get install nginx")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = work / "project"
        root = project / "site"
        root.mkdir(parents=True)
        (root / "index.html").write_text("<title>bench</title>")
        for name, size in FILES.items():
            (root / name).write_bytes(os.urandom(size))
        (project / "app.py").write_text("from shoestring import App\n\napp = App('bench')\n")
        (project / "shoestring.toml").write_text(
            '[log]\naccess_log = false\n[sites.www]\nroot = "site"\n'
        )
        bucket_project = work / "bucket-project"
        bucket_project.mkdir()
        (bucket_project / "app.py").write_text((project / "app.py").read_text())
        (bucket_project / "shoestring.toml").write_text(
            '[log]\naccess_log = false\n[sites.www]\nbucket = "site"\n'
        )
        subprocess.run(
            [str(VENV_BIN / "shoestring"), "sites", "publish", "www", str(root),
             "--project", str(bucket_project)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        servers = {
            "shoestring": lambda port: shoestring_command(project, port),
            "shoestring-bucket": lambda port: shoestring_command(bucket_project, port),
            "nginx": lambda port: nginx_command(root, port, work),
        }
        if shutil.which("caddy"):
            servers["caddy"] = lambda port: caddy_command(project, port, work)
        results: dict[str, dict[str, LoadResult]] = {}
        for name, command in servers.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with server(command(port), url + "/index.html", cwd=work):
                results[name] = {}
                for file in FILES:
                    wrk(url + "/" + file, seconds=2)
                    results[name][file] = wrk(url + "/" + file, seconds=args.seconds)
            subprocess.run(["pkill", "-f", str(work / "nginx.conf")], check=False)
    for file, size in FILES.items():
        print(f"\n{file} ({size:,} bytes)")
        print(f"{'':18} {'requests/s':>11} {'MB/s':>8} {'p99 ms':>8} {'x nginx':>8} {'x dir':>6}")
        base = results["nginx"][file].requests_per_second
        directory = results["shoestring"][file].requests_per_second
        for name, by_file in results.items():
            result = by_file[file]
            rps = result.requests_per_second
            mbps = rps * size / 1e6
            print(
                f"{name:18} {rps:>11,.0f} {mbps:>8,.0f} {result.p99_ms:>8.2f} {rps / base:>8.2f} {rps / directory:>6.2f}"
            )
    print("\ngoals: shoestring >= 0.25 x nginx for 1 KiB, >= 0.65 x for 1 MiB;")
    print("       shoestring-bucket >= 0.9 x the directory site (x dir)")


if __name__ == "__main__":
    main()
