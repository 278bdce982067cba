"""Object events: what happened to which key, and the hooks that hear about it.

Every successful put, copy, completed multipart upload and delete emits an
ObjectEvent after it is committed. `@bucket.on_put("images/*")` registers
an async callback; each runs in a task of its own, so a slow or failing hook
never delays or fails the write that caused it. The jobs service will make
these deliveries durable (retried after a crash); today they are at most once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

log = logging.getLogger("shoestring.storage.events")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EventKind = Literal["put", "delete"]
# The S3 event names (as in S3 event notifications), for consumers that map them.
EventName = Literal[
    "ObjectCreated:Put",
    "ObjectCreated:Copy",
    "ObjectCreated:CompleteMultipartUpload",
    "ObjectRemoved:Delete",
]


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """Something happened to `key` in `bucket`: created (put, copy, multipart) or removed."""

    name: EventName
    bucket: str
    key: str
    size: int = 0
    etag: str = ""
    time: datetime = EPOCH

    @property
    def kind(self) -> EventKind:
        return "delete" if self.name.startswith("ObjectRemoved") else "put"


EventHook = Callable[[ObjectEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Registration:
    bucket: str
    kind: EventKind
    pattern: str
    hook: EventHook


class EventHooks:
    """Callbacks by bucket, event kind and key pattern (`*` matches across `/`)."""

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._running: set[asyncio.Task[None]] = set()

    def add(self, bucket: str, kind: EventKind, pattern: str, hook: EventHook) -> None:
        self._registrations.append(_Registration(bucket, kind, pattern, hook))

    def matching(self, event: ObjectEvent) -> list[EventHook]:
        return [
            r.hook
            for r in self._registrations
            if r.bucket == event.bucket
            and r.kind == event.kind
            and fnmatch.fnmatchcase(event.key, r.pattern)
        ]

    def emit(self, event: ObjectEvent) -> None:
        """Start every matching hook; return without waiting for them."""
        for hook in self.matching(event):
            task = asyncio.get_running_loop().create_task(self._call(hook, event))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _call(self, hook: EventHook, event: ObjectEvent) -> None:
        try:
            await hook(event)
        except Exception:
            # The key may be personal data: log the hook and the bucket, not the key.
            name = getattr(hook, "__qualname__", repr(hook))
            log.exception(
                "storage event hook %s failed for %s in %s", name, event.name, event.bucket
            )

    async def drain(self, grace: float = 10.0) -> None:
        """Wait for running hooks (at shutdown), cancelling those still running after `grace` seconds."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=grace)
        for task in pending:
            task.cancel()
