"""Object events, and the triggers that hear about them as durable jobs.

`@bucket.on_put("images/*")` makes the decorated function a job. A write
whose key matches enqueues that job *before* it touches the backend, due only
after INTENT_DELAY, and makes it due at once, carrying the event, when the
write commits. If the process dies in between, the job still runs after the
delay and asks the bucket what happened: the event is delivered if the write
took effect and dropped if not. A write that fails cancels the job. So no
committed write loses its event; delivery is at least once, like S3's.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from shoestring.db.database import current_transaction
from shoestring.jobs import store

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.jobs import Job

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Seconds before a trigger whose write never reported back checks for itself.
# Longer than any write should take; a write that takes longer still delivers
# (its event is queued afresh when it commits).
INTENT_DELAY = 300.0

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
class _Trigger:
    bucket: str
    kind: EventKind
    pattern: str
    job: Job[[dict[str, Any]]]


class Delivery:
    """Handed to the code that writes: it reports what the write did."""

    def __init__(self) -> None:
        self.event: ObjectEvent | None = None

    def committed(self, event: ObjectEvent) -> None:
        self.event = event


class Triggers:
    """Jobs by bucket, event kind and key pattern (`*` matches across `/`)."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._triggers: list[_Trigger] = []

    def add(
        self, bucket: str, kind: EventKind, pattern: str, hook: EventHook, **job_options: Any
    ) -> None:
        async def deliver(event: dict[str, Any]) -> None:
            resolved = await self._resolve(event) if "since" in event else ObjectEvent(**event)
            if resolved is not None:
                await hook(resolved)

        name = f"storage.{bucket}.on_{kind}.{hook.__module__}.{hook.__qualname__}"
        job = self._app.jobs.define(deliver, name=name, **job_options)
        self._triggers.append(_Trigger(bucket, kind, pattern, job))

    def matching(self, bucket: str, kind: EventKind, key: str) -> list[_Trigger]:
        return [
            t
            for t in self._triggers
            if t.bucket == bucket and t.kind == kind and fnmatch.fnmatchcase(key, t.pattern)
        ]

    @asynccontextmanager
    async def write(self, bucket: str, name: EventName, key: str) -> AsyncIterator[Delivery]:
        """Wrap one write: intents before it, events after it (see the module docstring)."""
        delivery = Delivery()
        kind: EventKind = "delete" if name.startswith("ObjectRemoved") else "put"
        triggers = self.matching(bucket, kind, key)
        if not triggers:
            yield delivery
            return
        joined = current_transaction.get()
        if joined is not None:
            # Inside a tables transaction, the database is that transaction's
            # until it ends: the triggers are queued in it, after the write, and
            # commit (or roll back) with it, as table triggers do.
            yield delivery
            if delivery.event is not None:
                for trigger in triggers:
                    await self._app.jobs.enqueue_in(joined, trigger.job, (asdict(delivery.event),))
            return
        intent = {"name": name, "bucket": bucket, "key": key, "since": time.time()}
        outside = current_transaction.set(None)
        try:
            ids = [await t.job.enqueue(intent, delay=INTENT_DELAY) for t in triggers]
            try:
                yield delivery
            except BaseException:
                await self._cancel(ids)
                raise
            if delivery.event is None:  # nothing changed (a delete of an absent key)
                await self._cancel(ids)
                return
            event = asdict(delivery.event)
            for trigger, job_id in zip(triggers, ids, strict=True):
                if not await self._app.jobs.make_due(job_id, (event,)):
                    await trigger.job.enqueue(event)  # it ran early (a very slow write)
        finally:
            current_transaction.reset(outside)

    async def _cancel(self, ids: list[str]) -> None:
        for job_id in ids:
            await store.cancel(self._app.db.database, job_id)

    async def _resolve(self, intent: dict[str, Any]) -> ObjectEvent | None:
        """The event of a write whose process died before it reported back, if it took effect."""
        from shoestring.storage.errors import NoSuchKey

        bucket = self._app.storage.bucket(intent["bucket"])
        try:
            info = await bucket.head(intent["key"])
        except NoSuchKey:
            if intent["name"] == "ObjectRemoved:Delete":
                return ObjectEvent(
                    intent["name"], bucket.name, intent["key"], time=datetime.now(UTC)
                )
            return None
        # Last-Modified has whole seconds: an object from the intent's second counts.
        if intent["name"] == "ObjectRemoved:Delete" or info.last_modified.timestamp() < int(
            intent["since"]
        ):
            return None
        return ObjectEvent(
            intent["name"], bucket.name, info.key, info.size, info.etag, info.last_modified
        )
