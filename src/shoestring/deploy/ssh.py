"""One SSH connection to the deploy host (asyncssh), and the few things done over it.

Commands are built with `shlex.quote` from fixed parts and validated names;
file contents, secrets included, travel on a command's stdin, never in its
arguments, so they appear in no process list and no log. A user other than
root runs everything through `sudo -n` (password-less sudo is required).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import asyncssh

from shoestring.config import DeploySettings
from shoestring.deploy.errors import DeployError, RemoteError
from shoestring.deploy.layout import Target

T = TypeVar("T")
CONNECT_TIMEOUT = 20
# A transfer may take as long as it needs; one that moves no byte for this
# long is stuck (a dead connection, a full disk on a hung NFS) and is ended.
IDLE_TIMEOUT = 120
_CHUNK = 256 * 1024


@dataclass
class Result:
    stdout: str
    stderr: str
    status: int


class Host:
    """The deploy host, as root (directly or through sudo)."""

    def __init__(self, connection: asyncssh.SSHClientConnection, target: Target) -> None:
        self.connection = connection
        self.target = target

    def _wrap(self, command: str, *, as_user: str | None, env: dict[str, str] | None) -> str:
        prefix = ""
        if env:
            prefix = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "
        command = f"{prefix}sh -c {shlex.quote(command)}"
        if as_user:
            command = f"runuser -u {shlex.quote(as_user)} -- {command}"
        if self.target.user != "root":
            command = f"sudo -n {command}"
        return command

    async def run(
        self,
        command: str,
        *,
        check: bool = True,
        input: bytes | None = None,
        as_user: str | None = None,
        env: dict[str, str] | None = None,
        time_limit: float | None = 600,
    ) -> Result:
        """Run `command` (a shell command line) on the host; RemoteError if it fails.

        `time_limit=None` lets it run as long as it takes (a backup of any size).
        """
        stdout, stderr, status = await self._execute(
            command, input=input, as_user=as_user, env=env, time_limit=time_limit
        )
        result = Result(stdout=_text(stdout), stderr=stderr, status=status)
        if check and result.status != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-3000:]
            raise RemoteError(f"`{command}` failed on the host (exit {result.status}):\n{output}")
        return result

    async def output(self, command: str, *, time_limit: float = 600) -> bytes:
        """The standard output of `command` as bytes (a tar stream, say); RemoteError if it fails."""
        stdout, stderr, status = await self._execute(
            command, input=None, as_user=None, env=None, time_limit=time_limit
        )
        if status != 0:
            raise RemoteError(f"`{command}` failed on the host (exit {status}):\n{stderr[-3000:]}")
        return stdout

    async def _execute(
        self,
        command: str,
        *,
        input: bytes | None,
        as_user: str | None,
        env: dict[str, str] | None,
        time_limit: float | None,
    ) -> tuple[bytes, str, int]:
        """Run `command`: its standard output (bytes), its standard error and exit status."""
        wrapped = self._wrap(command, as_user=as_user, env=env)
        try:
            done = await self.connection.run(
                wrapped, input=input, encoding=None, timeout=time_limit, check=False
            )
        except asyncssh.TimeoutError:
            raise RemoteError(f"`{command}` took longer than {time_limit}s on the host") from None
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(
                f"lost the connection to {self.target} running `{command}`: {exc}"
            ) from None
        status = done.exit_status or 0
        if done.exit_status is None and done.exit_signal:
            status = 128
        stdout = done.stdout or b""
        raw = stdout.encode() if isinstance(stdout, str) else bytes(stdout)
        return raw, _text(done.stderr), status

    async def write_file(
        self,
        path: PurePosixPath,
        content: bytes,
        *,
        mode: int = 0o644,
        owner: str = "root",
        as_user: str | None = None,
    ) -> None:
        """Write `content` to `path` atomically with the given mode and owner (via stdin).

        With `as_user`, that user writes it (and owns it): the way to write into a
        directory the app may change, where root would follow the app's symbolic links.
        """
        await self.run(
            _write_command(path, mode=mode, owner=owner, as_user=as_user),
            input=content,
            as_user=as_user,
        )

    async def read_file(self, path: PurePosixPath) -> bytes | None:
        """The file's contents; None when it cannot be read (it does not exist, say)."""
        content, _, status = await self._execute(
            f"cat {shlex.quote(str(path))}", input=None, as_user=None, env=None, time_limit=600
        )
        return content if status == 0 else None

    async def upload(
        self,
        local: Path,
        remote: PurePosixPath,
        *,
        mode: int = 0o644,
        owner: str = "root",
        as_user: str | None = None,
    ) -> None:
        """Copy a local file to the host, streamed in chunks on stdin (so sudo works too).

        No size or total time limit: only a transfer that stops moving fails.
        """
        command = _write_command(remote, mode=mode, owner=owner, as_user=as_user)
        wrapped = self._wrap(command, as_user=as_user, env=None)
        try:
            async with self.connection.create_process(wrapped, encoding=None) as process:
                with local.open("rb") as file:
                    while chunk := await asyncio.to_thread(file.read, _CHUNK):
                        process.stdin.write(chunk)
                        await _progressing(process.stdin.drain())
                process.stdin.write_eof()
                errors = await _progressing(process.stderr.read())
                done = await _progressing(process.wait())
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise RemoteError(
                f"uploading {local} to {remote} on {self.target} failed: {_why(exc)}"
            ) from None
        if done.exit_status != 0:
            raise RemoteError(f"cannot write {remote} on the host:\n{_text(errors)[-3000:]}")

    async def download(
        self, remote: PurePosixPath, local: Path, *, as_user: str | None = None
    ) -> None:
        """Copy a file from the host to `local` (mode 0600), streamed in chunks.

        `local` appears only once complete; no size or total time limit.
        With `as_user`, that user reads it (a file in a directory the app may change).
        """
        wrapped = self._wrap(f"cat {shlex.quote(str(remote))}", as_user=as_user, env=None)
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.{secrets.token_hex(4)}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    async with self.connection.create_process(wrapped, encoding=None) as process:
                        while chunk := await _progressing(process.stdout.read(_CHUNK)):
                            await asyncio.to_thread(out.write, chunk)
                        errors = await _progressing(process.stderr.read())
                        done = await _progressing(process.wait())
                except (asyncssh.Error, TimeoutError) as exc:
                    raise RemoteError(
                        f"downloading {remote} from {self.target} failed: {_why(exc)}"
                    ) from None
                if done.exit_status != 0:
                    raise RemoteError(f"cannot read {remote} on the host: {_text(errors).strip()}")
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, local)
        finally:
            partial.unlink(missing_ok=True)

    async def stream(self, command: str, emit: Callable[[str], None]) -> int:
        """Run `command`, passing each line of its output to `emit` as it comes."""
        async with self.connection.create_process(
            self._wrap(command, as_user=None, env=None), stderr=asyncssh.STDOUT
        ) as process:
            async for line in process.stdout:
                emit(str(line).rstrip("\n"))
            await process.wait()
            return process.exit_status or 0


def _write_command(path: PurePosixPath, *, mode: int, owner: str, as_user: str | None) -> str:
    """A shell command writing its stdin to `path`, atomically (a temporary file, then mv)."""
    quoted = shlex.quote(str(path))
    temporary = shlex.quote(f"{path}.tmp-shoestring")
    if as_user is not None:
        # `cat`, not `install /dev/stdin`: reopening the channel's pipe through
        # /proc is refused to a user other than the one that made it.
        parent = shlex.quote(str(path.parent))
        return (
            f"umask 077 && mkdir -p {parent} && cat > {temporary} && "
            f"chmod {mode:o} {temporary} && mv -fT {temporary} {quoted}"
        )
    return (
        f"install -D -m {mode:o} -o {shlex.quote(owner)} -g {shlex.quote(owner)} "
        f"/dev/stdin {temporary} && mv -fT {temporary} {quoted}"
    )


async def _progressing(step: Awaitable[T]) -> T:
    """`step`, or TimeoutError when it makes no progress for IDLE_TIMEOUT seconds."""
    return await asyncio.wait_for(step, IDLE_TIMEOUT)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"nothing moved for {IDLE_TIMEOUT}s"
    return str(exc) or type(exc).__name__


def _client_files(deploy: DeploySettings, target: Target) -> tuple[Path, bool, list[str]]:
    """(known_hosts path, whether it lists the host, client key files)."""
    known = Path(deploy.known_hosts).expanduser()
    listed = known.exists() and bool(
        asyncssh.read_known_hosts(str(known)).match(target.address, "", target.port)[0]
    )
    keys = [str(Path(deploy.ssh_key).expanduser())] if deploy.ssh_key else []
    return known, listed, keys


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def connect(
    deploy: DeploySettings, *, on_new_key: Callable[[str], None]
) -> AsyncIterator[Host]:
    """An open connection to `deploy.host`, its key checked against `known_hosts`.

    A host that `known_hosts` does not list yet is trusted on first use and
    added (OpenSSH's `accept-new`), and `on_new_key` is told its fingerprint;
    a listed host whose key differs is refused.
    """
    target = Target.parse(deploy.host)
    known, listed, keys = _client_files(deploy, target)
    try:
        connection = await asyncssh.connect(
            target.address,
            target.port,
            username=target.user,
            client_keys=keys or (),  # () means the agent and ~/.ssh/id_*
            known_hosts=str(known) if listed else None,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise DeployError(
            f"the host key of {target.address} does not match {known} ({exc.reason}). If the "
            f"host was reinstalled, remove its line with `ssh-keygen -R {_spec(target)} -f {known}`; "
            "otherwise someone may be in the way: do not continue"
        ) from None
    except asyncssh.PermissionDenied:
        raise DeployError(
            f"{target} refused the SSH key: add your public key to the host's "
            f"~{target.user}/.ssh/authorized_keys or set `ssh_key` in [deploy]"
        ) from None
    except (asyncssh.Error, OSError) as exc:
        raise DeployError(
            f"cannot connect to {target}: {exc}. Check `host` in [deploy] and that sshd runs"
        ) from None
    try:
        if not listed:
            key = connection.get_server_host_key()
            if key is not None:
                line = f"{_spec(target)} {key.export_public_key().decode().strip()}\n"
                await asyncio.to_thread(_append, known, line)
                on_new_key(key.get_fingerprint())
        yield Host(connection, target)
    finally:
        connection.close()
        with contextlib.suppress(Exception):
            await connection.wait_closed()


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(line)


def _spec(target: Target) -> str:
    return target.address if target.port == 22 else f"[{target.address}]:{target.port}"
