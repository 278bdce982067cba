"""A shoestring App serving the S3 API on loopback (granian in a thread), and boto3 clients for it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from granian.constants import HTTPModes, Interfaces
from granian.server.embed import Server as EmbeddedServer

from shoestring import App, Settings
from shoestring.config import ServerSettings, StorageSettings
from shoestring.storage.credentials import NewKey
from tests.certificates import self_signed

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """`app` served by granian, as `shoestring run` serves it, on its own event loop in a thread.

    `call` runs coroutines on that loop. With `tls` (a certificate and its key) it
    serves HTTPS, and `client()` trusts that certificate: boto3 sends its
    checksums as aws-chunked trailers only over TLS.
    """

    def __init__(self, app: App, port: int, tls: tuple[Path, Path] | None = None) -> None:
        self.app = app
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.certificate = tls[0] if tls else None
        self.loop = asyncio.new_event_loop()
        self.server = EmbeddedServer(
            app, address="127.0.0.1", port=port, interface=Interfaces.ASGI,
            http=HTTPModes.http1, log_enabled=False,
            ssl_cert=tls[0] if tls else None, ssl_key=tls[1] if tls else None,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self._answers():
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def _answers(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0 and self.app._ready

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(15)

    def new_key(self, *buckets: str, read: bool = True, write: bool = True) -> NewKey:
        keys = self.app.storage.keys
        return self.call(keys.create(buckets or ("*",), read=read, write=write))

    def client(self, key: NewKey | None = None, **config: Any) -> Any:
        key = key or self.new_key()
        return s3_client(
            self.url + "/_s3", key.key.access_key_id, key.secret_access_key,
            verify=str(self.certificate) if self.certificate else None, **config,
        )  # fmt: skip


def s3_client(
    endpoint: str, access_key_id: str, secret: str, *, verify: str | None = None, **config: Any
) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=verify,
        config=Config(
            **{
                "s3": {"addressing_style": "path"},
                "signature_version": "s3v4",
                "retries": {"max_attempts": 1},
                **config,
            }
        ),
    )


def serve(
    tmp_path: Path,
    storage: StorageSettings | None = None,
    app: App | None = None,
    *,
    tls: bool = False,
) -> ServerThread:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(port=port),
        storage=storage or StorageSettings(),
    )
    if app is None:
        app = App("storagetest", settings=settings)
    else:
        app.configure(settings)
    return ServerThread(app, port, self_signed(tmp_path / "tls") if tls else None).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """A fresh App with the fs backend, serving the S3 API at /_s3."""
    running = serve(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def s3(server: ServerThread) -> Any:
    """A boto3 client with an all-powerful key for `server`."""
    return server.client()


@pytest.fixture(params=["fs", "s3"])
def backend_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """A running App on each backend: fs, and s3 against a second shoestring as the S3 service."""
    if request.param == "fs":
        running = serve(tmp_path / "fs")
        yield running
        running.stop()
        return
    peer = serve(tmp_path / "peer")
    key = peer.new_key()
    settings = StorageSettings(
        backend="s3",
        endpoint=peer.url + "/_s3",
        access_key_id=key.key.access_key_id,
        secret_access_key=key.secret_access_key,  # type: ignore[arg-type]
        bucket_prefix="proj-",
    )
    running = serve(tmp_path / "app", settings)
    yield running
    running.stop()
    peer.stop()
