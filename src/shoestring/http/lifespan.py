"""Run a mounted ASGI app's lifespan (startup/shutdown) as its own server would.

Starlette's Mount does not forward lifespan events, so a FastAPI app with a
`lifespan=` or startup handlers would silently never start. shoestring drives
each mounted app's lifespan protocol itself and shares the state it yields
with the requests routed to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message

from shoestring.errors import ShoestringError


class LifespanError(ShoestringError):
    """A mounted app reported that its startup or shutdown failed."""


class MountedLifespan:
    def __init__(self, app: ASGIApp, *, label: str) -> None:
        self.app = app
        self.label = label
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._task = asyncio.create_task(self._run(scope))
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        if self._supported and self._task is not None:
            await self._exchange("lifespan.shutdown")
            await self._task

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:
            # An app without lifespan support raises on the unknown scope type;
            # ASGI says the server then carries on without lifespan events.
            await self._from_app.put({"type": "shoestring.lifespan.unsupported", "exc": exc})

    async def _exchange(self, event: str) -> None:
        if not self._supported:
            return
        await self._to_app.put({"type": event})
        reply = await self._from_app.get()
        if reply["type"] == "shoestring.lifespan.unsupported":
            self._supported = False
            if event == "lifespan.startup":
                return
            raise LifespanError(f"{self.label}: {event} failed: {reply['exc']!r}")
        if reply["type"].endswith(".failed"):
            raise LifespanError(f"{self.label}: {event} failed: {reply.get('message', '')}")
