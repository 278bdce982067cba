"""The fs backend's data files: bodies written durably under random names, never changed.

    <root>/data/ab/<id>    one immutable file per object or part, named by a random id
    <root>/tmp/<id>        bodies being received

A body is written to tmp/, fsync'd, renamed into data/, and that directory
fsync'd: only then may an index row name it (fs.py). Because a file never
changes afterwards, two objects may share one (a copy is a hard link) and a
reader holding one is never torn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from shoestring.storage.backend import Body
from shoestring.storage.digests import (
    CHECKSUMS,
    Digested,
    DigestingReader,
    Expected,
    iterate,
    to_base64,
)
from shoestring.storage.objects import Checksum

READ_CHUNK = 1024 * 1024


class DataFiles:
    """The data and tmp directories under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, max_object_size: int, fsync: bool) -> None:
        self.root = root
        self.max_object_size = max_object_size
        self.fsync = fsync
        self.data = root / "data"
        self.tmp = root / "tmp"
        self._data_dir = str(self.data)

    def prepare(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        for n in range(256):
            (self.data / f"{n:02x}").mkdir(parents=True, exist_ok=True)
        fsync_dir(self.data)
        fsync_dir(self.root)

    def name(self, file: str) -> str:
        # A str, not a Path: pathlib costs a small GET more than its read.
        return f"{self._data_dir}/{file[:2]}/{file}"

    def path(self, file: str) -> Path:
        return Path(self.name(file))

    def everything(self) -> list[Path]:
        """Every file received or being received, for the sweep of a crash's leftovers."""
        return [*self.tmp.iterdir(), *self.data.glob("??/*")]

    async def receive(
        self, body: Body, expected: Expected | None, algorithm: str | None = None
    ) -> tuple[str, Digested]:
        """Write the body to a new durable file; return its name and what reading it found.

        `algorithm` is checksummed whether or not the client sent a value for it.
        """
        reader = DigestingReader(expected, self.max_object_size, algorithm=algorithm)
        tmp = self.tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Writes go to the page cache and are fast; the slow part, fsync,
            # runs on a thread in _persist.
            async for chunk in iterate(body):
                reader.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            digested = reader.finish(body)
            file = await asyncio.to_thread(self._persist, fd, tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return file, digested

    def _persist(self, fd: int, tmp: Path) -> str:
        """fsync the file, rename it into data/, fsync that directory; return its name."""
        try:
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        file = uuid.uuid4().hex
        os.rename(tmp, self.path(file))
        if self.fsync:
            fsync_dir(self.path(file).parent)
        return file

    def discard(self, *files: str | None) -> None:
        for file in files:
            if file:
                with contextlib.suppress(OSError):
                    os.unlink(self.path(file))

    def link(self, file: str) -> str:
        """A second name for `file` (FileNotFoundError if it is gone); run it on a thread."""
        linked = uuid.uuid4().hex
        os.link(self.path(file), self.path(linked))
        if self.fsync:
            fsync_dir(self.path(linked).parent)
        return linked

    def concatenate(self, files: list[str], algorithm: str | None) -> tuple[str, Checksum | None]:
        """A new durable file holding `files` one after another, and its `algorithm` checksum.

        Run it on a thread. The bytes are checksummed on their way through.
        """
        hasher = CHECKSUMS[algorithm][0]() if algorithm else None
        tmp = self.tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                for file in files:
                    with self.path(file).open("rb") as part:
                        while chunk := part.read(READ_CHUNK):
                            out.write(chunk)
                            if hasher is not None:
                                hasher.update(chunk)
            name = self._persist(fd, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if hasher is None or algorithm is None:
            return name, None
        return name, Checksum(algorithm, to_base64(hasher.digest()))


async def read_chunks(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of the open file from `start`, a chunk at a time; closes `fd`."""
    # Reads run on the loop's thread: objects are immutable files, almost
    # always in the page cache when hot, and a thread hop per MiB measured
    # slower than the read itself (bench/storage.py).
    try:
        offset, remaining = start, length
        while remaining > 0:
            chunk = os.pread(fd, min(READ_CHUNK, remaining), offset)
            if not chunk:
                break
            offset += len(chunk)
            remaining -= len(chunk)
            yield chunk
            await asyncio.sleep(0)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
