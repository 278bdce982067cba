"""`shoestring run` as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.e2e.conftest import SHOESTRING, Server

pytestmark = pytest.mark.e2e

SLOW_APP = """
import asyncio
import contextlib
from shoestring import App, Request

app = App("slow")

@app.route("/slow")
async def slow(request: Request) -> dict[str, str]:
    await asyncio.sleep(float(request.query_params.get("s", "1.5")))
    return {"finished": "yes"}
"""


def test_new_project_serves_health_and_its_route(project: Path, start: type[Server]) -> None:
    server = start(project)
    server.wait_ready()
    assert httpx.get(server.base_url + "/").json() == {"hello": "demo"}
    ready = httpx.get(server.base_url + "/_ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert server.terminate() == 0
    lines = [json.loads(line) for line in server.log.splitlines()]
    assert any(line["logger"] == "shoestring.access" and line["path"] == "/" for line in lines)


def test_sigterm_mid_request_finishes_that_request_then_exits_0(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(SLOW_APP)
    server = start(project)
    server.wait_ready()
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["response"] = httpx.get(server.base_url + "/slow?s=3", timeout=10)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)  # the request is now in flight
    started = time.monotonic()
    server.process.send_signal(15)
    time.sleep(1.2)  # granian's accept loop ends within ACCEPT_LOOP_EXIT, then no more listening
    with pytest.raises(httpx.ConnectError):  # refused at once: a proxy tries another node
        httpx.get(server.base_url + "/_health", timeout=1)
    caller.join(10)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"finished": "yes"}
    assert server.terminate() == 0
    assert time.monotonic() - started < 5


def test_shutdown_does_not_wait_past_its_bound(project: Path, start: type[Server]) -> None:
    (project / "app.py").write_text(SLOW_APP)
    (project / "shoestring.toml").write_text("[server]\nshutdown_timeout = 1\n")
    server = start(project)
    server.wait_ready()
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(httpx.get(server.base_url + "/slow?s=60", timeout=30)),
        daemon=True,
    )
    caller.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert server.terminate(timeout=15) == 0
    assert time.monotonic() - started < 5
    caller.join(5)
    # The request cut short is told so, in a way a client can retry on.
    assert answers[0].status_code == 503
    assert answers[0].json()["error"]["code"] == "shutting_down"
    assert "1 requests still running" in server.log


def test_sigterm_during_startup_stops_cleanly_once_started(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(
        "import asyncio\n"
        "from pathlib import Path\n"
        "from shoestring import App\n"
        "app = App('slow-start')\n"
        "@app.on_startup\n"
        "async def warm_up() -> None:\n"
        "    Path('started').write_text('yes')\n"
        "    await asyncio.sleep(2)\n"
        "@app.on_shutdown\n"
        "async def goodbye() -> None:\n"
        "    Path('stopped').write_text('yes')\n"
    )
    server = start(project)
    deadline = time.monotonic() + 15
    while not (project / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)  # mid-startup
    assert server.terminate(timeout=15) == 0, server.log
    assert (project / "stopped").read_text() == "yes"  # shutdown hooks ran


def test_sigterm_while_the_app_module_imports_is_honoured_once_started(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(
        "import time\n"
        "from pathlib import Path\n"
        "from shoestring import App\n"
        "Path('importing').write_text('yes')\n"
        "time.sleep(2)  # a slow import\n"
        "app = App('slow-import')\n"
        "@app.on_shutdown\n"
        "async def goodbye() -> None:\n"
        "    Path('stopped').write_text('yes')\n"
    )
    server = start(project)
    deadline = time.monotonic() + 15
    while not (project / "importing").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)  # mid-import
    assert server.terminate(timeout=15) == 0, server.log
    assert (project / "stopped").read_text() == "yes"  # started, then stopped in order


def test_shutdown_closes_websockets_as_going_away_and_bounds_their_handlers(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(
        "import asyncio\n"
        "from pathlib import Path\n"
        "from starlette.applications import Starlette\n"
        "from starlette.routing import WebSocketRoute\n"
        "from starlette.websockets import WebSocketDisconnect\n"
        "from shoestring import App\n"
        "async def echo(ws):\n"
        "    await ws.accept()\n"
        "    try:\n"
        "        while True:\n"
        "            await ws.send_text(await ws.receive_text())\n"
        "    except WebSocketDisconnect:\n"
        "        Path('echo-ended').write_text('yes')\n"
        "async def deaf(ws):\n"
        "    await ws.accept()\n"
        "    await asyncio.sleep(3600)  # never receives, so never learns the client left\n"
        "app = App('live')\n"
        "app.mount('/live', Starlette(routes=[WebSocketRoute('/echo', echo),\n"
        "                                   WebSocketRoute('/deaf', deaf)]))\n"
    )
    (project / "shoestring.toml").write_text("[server]\nshutdown_timeout = 2\n")
    server = start(project)
    server.wait_ready()
    base = server.base_url.replace("http://", "ws://") + "/live"

    async def closed_code(socket: websockets.ClientConnection) -> int | None:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=10)
        return closed.value.rcvd.code if closed.value.rcvd else None

    async def stop_with_two_open() -> None:
        async with (
            websockets.connect(base + "/echo") as echo,
            websockets.connect(base + "/deaf") as deaf,
        ):
            await echo.send("hi")
            assert await echo.recv() == "hi"
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            # Both told at once that the server is going away: clients reconnect.
            assert await closed_code(echo) == 1001
            assert await closed_code(deaf) == 1001
            assert time.monotonic() - started < 1.5

    asyncio.run(stop_with_two_open())
    assert server.terminate(timeout=15) == 0, server.log
    assert (project / "echo-ended").read_text() == "yes"  # the handler learnt it and finished
    # The handler that never receives is held to the bound, then cancelled.
    assert "1 requests still running" in server.log


def test_fastapi_app_mounted_in_a_real_process(project: Path, start: type[Server]) -> None:
    (project / "app.py").write_text(
        "from fastapi import FastAPI\n"
        "from shoestring import App\n"
        "app = App('mounted')\n"
        "api = FastAPI()\n"
        "@api.get('/items/{n}')\n"
        "async def item(n: int) -> dict[str, int]:\n"
        "    return {'n': n * 2}\n"
        "app.mount('/api', api)\n"
    )
    server = start(project)
    server.wait_ready()
    assert httpx.get(server.base_url + "/api/items/21").json() == {"n": 42}
    assert httpx.get(server.base_url + "/api/docs").status_code == 200


def test_mounted_websocket_and_lifespan_state_in_a_real_process(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(
        "import contextlib\n"
        "from starlette.applications import Starlette\n"
        "from starlette.routing import Route, WebSocketRoute\n"
        "from starlette.responses import PlainTextResponse\n"
        "from shoestring import App\n"
        "@contextlib.asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    yield {'greeting': 'hello from lifespan'}\n"
        "async def greeting(request):\n"
        "    return PlainTextResponse(request.state.greeting)\n"
        "async def echo(ws):\n"
        "    await ws.accept()\n"
        "    await ws.send_text('echo:' + await ws.receive_text())\n"
        "    await ws.close()\n"
        "live = Starlette(routes=[Route('/greeting', greeting), WebSocketRoute('/echo', echo)],\n"
        "                 lifespan=lifespan)\n"
        "app = App('live')\n"
        "app.mount('/live', live)\n"
    )
    server = start(project)
    server.wait_ready()
    assert httpx.get(server.base_url + "/live/greeting").text == "hello from lifespan"

    async def talk() -> str:
        url = server.base_url.replace("http://", "ws://") + "/live/echo"
        async with websockets.connect(url) as socket:
            await socket.send("hi")
            return str(await socket.recv())

    assert asyncio.run(talk()) == "echo:hi"
    assert server.terminate() == 0


def test_no_personal_data_in_logs_after_requests_carrying_it(
    project: Path, start: type[Server]
) -> None:
    (project / "app.py").write_text(
        "import logging\n"
        "from shoestring import App, Request\n"
        "app = App('private')\n"
        "@app.route('/register', methods=['POST'])\n"
        "async def register(request: Request) -> dict[str, bool]:\n"
        "    body = await request.json()\n"
        "    logging.getLogger('private').info('register %s', body)\n"
        "    return {'ok': True}\n"
        "@app.route('/boom/{who}')\n"
        "async def boom(request: Request) -> None:\n"
        "    raise ValueError('no user ' + request.path_params['who'])\n"
    )
    server = start(project)
    server.wait_ready()
    email = "ada.lovelace+notes@example.org"
    httpx.post(
        server.base_url + f"/register?email={email}&token=tok-4242",
        json={"email": email, "password": "pw-9999"},
        headers={"Authorization": "Bearer bearer-7777", "Cookie": "sid=cookie-5555"},
    )
    assert httpx.get(server.base_url + f"/boom/{email}").status_code == 500
    assert server.terminate() == 0
    log = server.log
    assert "/register" in log  # the requests were logged...
    for secret in (email, "example.org", "tok-4242", "pw-9999", "bearer-7777", "cookie-5555"):
        assert secret not in log  # ...without what identifies the person


def test_bad_config_is_a_one_screen_error(project: Path) -> None:
    (project / "shoestring.toml").write_text("[server]\nport = 80000\nworkerz = 2\n")
    result = subprocess.run(
        [SHOESTRING, "run", str(project)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    output = result.stderr
    assert str(project / "shoestring.toml") in output
    assert "server.port" in output and "80000" in output
    assert "unknown key `server.workerz`" in output
    assert "Traceback" not in output
    assert len(output.splitlines()) <= 24


def test_missing_app_module_says_what_to_fix(project: Path) -> None:
    (project / "app.py").unlink()
    result = subprocess.run(
        [SHOESTRING, "run", str(project)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "no module 'app'" in result.stderr
    assert "[project] app" in result.stderr


def test_port_in_use_is_a_clear_error(project: Path, start: type[Server]) -> None:
    first = start(project)
    first.wait_ready()
    result = subprocess.run(
        [SHOESTRING, "run", str(project), "--port", str(first.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"port {first.port}" in result.stderr and "already in use" in result.stderr


def test_workers_share_the_port_and_stop_cleanly(project: Path, start: type[Server]) -> None:
    (project / "app.py").write_text(
        "import os\nfrom shoestring import App\napp = App('multi')\n"
        "@app.route('/pid')\nasync def pid() -> str:\n    return str(os.getpid())\n"
    )
    server = start(project, "--workers", "2")
    server.wait_ready()
    pids = set()
    for _ in range(40):
        with httpx.Client() as client:  # a new connection each time
            pids.add(client.get(server.base_url + "/pid").text)
    assert str(server.process.pid) not in pids  # served by the workers, not the supervisor
    assert server.terminate() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), "a worker outlived its supervisor"


def test_dev_reloads_when_the_code_changes(project: Path, start: type[Server]) -> None:
    server = start(project, command="dev")
    server.wait_ready()
    assert httpx.get(server.base_url + "/").json() == {"hello": "demo"}
    app_py = project / "app.py"
    app_py.write_text(app_py.read_text().replace('{"hello": "demo"}', '{"hello": "changed"}'))
    deadline = time.monotonic() + 15
    body = None
    while time.monotonic() < deadline:
        try:
            body = httpx.get(server.base_url + "/", timeout=1).json()
            if body == {"hello": "changed"}:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    assert body == {"hello": "changed"}, server.log
    assert server.terminate() == 0


def test_dev_waits_for_a_broken_app_to_be_fixed(project: Path, start: type[Server]) -> None:
    app_py = project / "app.py"
    working = app_py.read_text()
    app_py.write_text(working + "\ndef broken(:\n")
    server = start(project, command="dev")
    deadline = time.monotonic() + 15
    while "fix the problem above" not in server.log and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log
    assert "SyntaxError" in log and "def broken(:" in log and "fix the problem above" in log
    assert "shoestring/loader.py" not in log  # the app's line, not shoestring's frames
    app_py.write_text(working)
    server.wait_ready()
    assert httpx.get(server.base_url + "/").json() == {"hello": "demo"}
    assert server.terminate() == 0


def test_dev_on_a_taken_port_stops_with_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [SHOESTRING, "dev", str(project), "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
