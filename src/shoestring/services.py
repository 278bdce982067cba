"""Background services and the registry that attaches them to an App.

A service is anything with a name that starts, stops and reports its health:
storage, tables, jobs and mail are services; so can be an app's own. The App
starts them in registration order before serving, reports their health on
`/_ready`, and stops them in reverse order after the last request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast, runtime_checkable

log = logging.getLogger("shoestring.services")

HEALTH_TIMEOUT = 2.0  # seconds a health check may take before it counts as failing


@dataclass(frozen=True, slots=True)
class Health:
    """A service's answer to "can you do your job right now?"."""

    ok: bool
    detail: str = ""


@runtime_checkable
class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> Health: ...


S = TypeVar("S", bound=Service)


class ServiceRegistry:
    """The App's services by name, in the order they start."""

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self._started: list[Service] = []

    def add(self, service: S) -> S:
        if not isinstance(service, Service):
            raise TypeError(f"{service!r} is not a Service: it needs name, start, stop and health")
        if service.name in self._services:
            raise ValueError(f"a service named {service.name!r} is already registered")
        self._services[service.name] = service
        return service

    def require(self, name: str, factory: Callable[[], S]) -> S:
        """The service called `name`, created by `factory` on first use."""
        if name not in self._services:
            self.add(factory())
        return cast(S, self._services[name])

    def get(self, name: str) -> Service:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(
                f"no service named {name!r}; registered: {list(self._services)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._services.values()))

    def __len__(self) -> int:
        return len(self._services)

    async def start_all(self) -> None:
        """Start every service; if one fails, stop those already started and re-raise."""
        for service in self:
            try:
                await service.start()
            except BaseException:
                log.error("service %s failed to start", service.name)
                await self.stop_all()
                raise
            self._started.append(service)

    async def stop_all(self) -> None:
        """Stop started services in reverse order; one failing does not stop the rest."""
        while self._started:
            service = self._started.pop()
            try:
                await service.stop()
            except Exception:
                log.exception("service %s failed to stop cleanly", service.name)

    async def health_all(self) -> dict[str, Health]:
        checks = [self._checked_health(service) for service in self]
        results = await asyncio.gather(*checks)
        return {service.name: health for service, health in zip(self, results, strict=True)}

    async def _checked_health(self, service: Service) -> Health:
        if service not in self._started:
            return Health(ok=False, detail="not started")
        try:
            return await asyncio.wait_for(service.health(), HEALTH_TIMEOUT)
        except TimeoutError:
            return Health(ok=False, detail=f"health check took over {HEALTH_TIMEOUT:g}s")
        except Exception as exc:
            log.exception("health check of %s raised", service.name)
            return Health(ok=False, detail=f"health check raised {type(exc).__name__}")
