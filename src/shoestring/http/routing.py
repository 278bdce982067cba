"""shoestring's own routes under `/_`, matched behind one prefix test.

Routes are tried in order for every request, and a Starlette route costs a
regular-expression match to say no. The health checks, the dev mailbox and
the S3 API (at its default `/_s3`) all live under `/_`, a prefix app routes
rarely use: grouping them lets every other request pass them with a single
`startswith`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import ASGIApp, Receive, Scope, Send

RESERVED_PREFIX = "/_"
_CHOSEN = "shoestring.reserved_route"


def reserved_only(route: BaseRoute) -> bool:
    """Whether `route` can only ever match paths under `/_`."""
    if isinstance(route, Route):
        return route.path.startswith(RESERVED_PREFIX)
    return bool(getattr(route, "reserved_only", False))


class ReservedRoutes(BaseRoute):
    """Routes that all live under `/_`, tried in order, only for paths there."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not scope.get("path", "").startswith(RESERVED_PREFIX):
            return Match.NONE, {}
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            return Match.PARTIAL, {**partial[1], _CHOSEN: partial[0]}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope.pop(_CHOSEN)
        scope["route"] = route
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)


class AppRoute(Route):
    """An app's route; its 405 names every method the routes at its path answer."""

    allow: frozenset[str] = frozenset()

    @staticmethod
    def share_allow(routes: Sequence[BaseRoute]) -> None:
        """Give routes of the same path the methods all of them answer, for Allow."""
        by_path: dict[str, set[str]] = {}
        for route in routes:
            if isinstance(route, AppRoute):
                by_path.setdefault(route.path, set()).update(route.methods or ())
        for route in routes:
            if isinstance(route, AppRoute):
                route.allow = frozenset(by_path[route.path])

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.allow or self.methods))
            raise HTTPException(405, headers={"Allow": allow})
        await self.app(scope, receive, send)


class AppRouter(Starlette):
    """The App's routes, without Starlette's error middleware and exception handlers.

    RequestLogMiddleware, outside this, answers every exception already:
    HTTP errors as JSON, anything else as a JSON 500 (see http/errors.py).
    Starlette's two middlewares would wrap every request and its response's
    messages twice more to do the same.
    """

    def build_middleware_stack(self) -> ASGIApp:
        return self.router
