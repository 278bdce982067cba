"""`@app.route` handlers as ASGI apps.

Starlette wraps a plain endpoint function in `request_response`, which adds
an exception-handling layer of its own around every call. shoestring answers
what a handler raises once, in RequestLogMiddleware (http/request_log.py), so
a route's handler is served through this thinner adapter: a Request in, the
handler's return value out as a Response.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from shoestring.http.responses import to_response

Handler = Callable[..., Awaitable[Any]]


class HandlerApp:
    """The ASGI app serving one async handler (which takes the Request, or nothing)."""

    def __init__(self, handler: Handler) -> None:
        self.name = getattr(handler, "__qualname__", repr(handler))
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"handler {self.name} must be defined with `async def`: "
                "a blocking handler would stall every other request"
            )
        self.handler = handler
        self.takes_request = bool(inspect.signature(handler).parameters)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.takes_request:
            result = await self.handler(Request(scope, receive, send))
        else:
            result = await self.handler()
        await to_response(result, handler_name=self.name)(scope, receive, send)
