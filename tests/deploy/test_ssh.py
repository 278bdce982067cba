"""The SSH layer against a real SSH server on loopback (asyncssh, running commands with sh)."""

from __future__ import annotations

import asyncio
import os
import stat
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath

import asyncssh
import pytest

from shoestring.config import DeploySettings
from shoestring.deploy import ssh
from shoestring.deploy.errors import RemoteError

pytestmark = pytest.mark.anyio
SIZE = 24 * 1024 * 1024


def _runner(
    started: list[asyncio.subprocess.Process],
) -> Callable[[asyncssh.SSHServerProcess[bytes]], Awaitable[None]]:
    """The server's process factory: each command run locally by sh, kept in `started`."""

    async def run_locally(process: asyncssh.SSHServerProcess[bytes]) -> None:
        local = await asyncio.create_subprocess_shell(
            str(process.command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(local)
        await process.redirect(stdin=local.stdin, stdout=local.stdout, stderr=local.stderr)
        process.exit(await local.wait())
        await process.wait_closed()

    return run_locally


@pytest.fixture
def deploy_settings(tmp_path: Path) -> DeploySettings:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "id"))
    key.write_public_key(str(tmp_path / "id.pub"))
    return DeploySettings(
        host="root@127.0.0.1:0", ssh_key=str(tmp_path / "id"), known_hosts=str(tmp_path / "known")
    )


@pytest.fixture
async def host(deploy_settings: DeploySettings, tmp_path: Path) -> AsyncIterator[ssh.Host]:
    started: list[asyncio.subprocess.Process] = []
    server = await asyncssh.create_server(
        None,
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        authorized_client_keys=str(tmp_path / "id.pub"),
        process_factory=_runner(started),
        encoding=None,
    )
    port = server.sockets[0].getsockname()[1]
    settings = deploy_settings.model_copy(update={"host": f"root@127.0.0.1:{port}"})
    try:
        async with ssh.connect(settings, on_new_key=lambda _: None) as connected:
            yield connected
    finally:
        server.close()
        await server.wait_closed()
        # A command the client gave up on (a stalled transfer) still runs: end it
        # while this loop lives, or its transport is collected after the loop closed.
        for local in started:
            if local.returncode is None:
                local.kill()
            await local.wait()


async def test_a_large_file_travels_both_ways_in_chunks(host: ssh.Host, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(SIZE))
    remote = PurePosixPath(tmp_path / "on-host" / "big.bin")
    back = tmp_path / "back" / "big.bin"
    tracemalloc.start()
    try:
        await host.upload(source, remote, mode=0o600)
        await host.download(remote, back)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(os.stat(remote).st_mode) == 0o600
    assert stat.S_IMODE(back.stat().st_mode) == 0o600
    assert peak < SIZE / 3, f"{peak} bytes held at once: the file was not streamed"


async def test_a_failed_download_leaves_nothing(host: ssh.Host, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="cannot read"):
        await host.download(PurePosixPath(tmp_path / "missing"), tmp_path / "out" / "x")
    assert list((tmp_path / "out").iterdir()) == []


async def test_a_stalled_transfer_ends_but_a_slow_one_does_not(
    host: ssh.Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "IDLE_TIMEOUT", 1.5)
    # Four seconds in all, but never a second without a byte: allowed.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = await asyncio.create_subprocess_shell(
        f"for i in 1 2 3 4; do printf a; sleep 1; done > {fifo}"
    )
    await host.download(PurePosixPath(fifo), tmp_path / "got")
    await writer.wait()
    assert (tmp_path / "got").read_bytes() == b"aaaa"
    stalled = tmp_path / "stalled"
    os.mkfifo(stalled)
    holder = await asyncio.create_subprocess_shell(f"sleep 5 > {stalled}")
    with pytest.raises(RemoteError, match="nothing moved for"):
        await host.download(PurePosixPath(stalled), tmp_path / "never")
    holder.kill()
    await holder.wait()
    assert not (tmp_path / "never").exists()
