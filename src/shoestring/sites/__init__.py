"""Static sites: files served with CDN-grade caching, SPA routing, atomic publishing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.routing import BaseRoute, Host, Mount

from shoestring.config import Settings
from shoestring.sites.publish import PublishError, current_root
from shoestring.sites.server import SiteApp

__all__ = ["PublishError", "SiteApp", "site_routes"]


def site_routes(settings: Settings) -> list[BaseRoute]:
    """One route per `[sites.NAME]`: by host if it has one, else by path."""
    routes: list[BaseRoute] = []
    for name, site in settings.sites.items():
        root = (
            _fixed_root(Path(site.root)) if site.root else _published_root(settings.data_dir, name)
        )
        app = SiteApp(root, spa=site.spa, not_found=site.not_found or None, headers=site.headers)
        mount = Mount(site.path.rstrip("/"), app=app, name=f"site:{name}")
        routes.append(Host(site.host, app=mount) if site.host else mount)
    return routes


def _fixed_root(path: Path) -> Callable[[], Path]:
    return lambda: path


def _published_root(data_dir: Path, name: str) -> Callable[[], Path]:
    # Resolved per request: `sites publish` and `rollback` switch a symlink.
    return lambda: current_root(data_dir, name)
