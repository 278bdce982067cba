"""Static sites: files served with CDN-grade caching, SPA routing, atomic publishing.

A site's files live in a directory (`root`), in releases under the data
directory (`shoestring sites publish`), or in releases in a storage bucket
(`bucket`); SiteApp serves all three the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Host, Match, Mount
from starlette.types import Receive, Scope, Send

from shoestring.config import Settings, SiteSettings
from shoestring.sites.files import SiteSource
from shoestring.sites.publish import PublishError, current_root
from shoestring.sites.server import SiteApp, redirect_to_slash

if TYPE_CHECKING:
    from shoestring.storage.bucket import Bucket

__all__ = ["PublishError", "SiteApp", "by_precedence", "site_routes"]

_BARE = "shoestring.site_path_without_slash"  # scope key: the SiteMount that matched it


def site_routes(settings: Settings, *, buckets: Callable[[str], Bucket]) -> list[BaseRoute]:
    """One route per `[sites.NAME]`, at its path and on its host, tried `by_precedence`.

    `buckets(name)` gives the storage bucket of sites configured with `bucket`.
    """
    routes: list[BaseRoute] = []
    for name, site in by_precedence(settings.sites):
        source = _source(settings.data_dir, name, site, buckets)
        app = SiteApp(source, spa=site.spa, not_found=site.not_found or None, headers=site.headers)
        routes.append(
            SiteMount(site.path.rstrip("/"), app=app, name=f"site:{name}", host=site.host)
        )
    return routes


def by_precedence(sites: dict[str, SiteSettings]) -> list[tuple[str, SiteSettings]]:
    """The sites in the order a request tries them, whatever the order of shoestring.toml.

    The longest path first (a site at `/` must not hide one at `/docs`), and
    at equal paths a site for one host before a site for every host. The
    Caddyfile (caddy.py) lists its blocks in this order too.
    """
    return sorted(
        sites.items(), key=lambda item: (-len(item[1].path.rstrip("/")), not item[1].host)
    )


class SiteMount(Mount):
    """A site at its path, on its host only if it has one; other requests pass it by.

    The path itself (`/docs`, no slash) is redirected to `/docs/`, as a
    directory is: the site's relative links resolve from there.
    """

    def __init__(self, path: str, *, app: SiteApp, name: str, host: str = "") -> None:
        super().__init__(path, app=app, name=name)
        self.host = Host(host, app=app) if host else None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.host is not None and self.host.matches(scope)[0] is not Match.FULL:
            return Match.NONE, {}
        if self.path and scope["type"] == "http" and self._route_path(scope) == self.path:
            return Match.FULL, {"endpoint": redirect_to_slash, _BARE: self}
        match, child = super().matches(scope)
        if match is Match.FULL and scope.get("method") not in ("GET", "HEAD"):
            # A site answers only reads: an app route at this path that takes
            # other methods (a 405 naming them, too) comes first.
            return Match.PARTIAL, child
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(_BARE) is self:
            await redirect_to_slash(scope, receive, send)
            return
        await super().handle(scope, receive, send)

    @staticmethod
    def _route_path(scope: Scope) -> str:
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        return path[len(root_path) :] if root_path and path.startswith(root_path) else path


def _source(
    data_dir: Path, name: str, site: SiteSettings, buckets: Callable[[str], Bucket]
) -> SiteSource:
    from shoestring.sites.directory import DirectorySource

    if site.bucket:
        from shoestring.sites.bucket_releases import BucketLayout
        from shoestring.sites.bucket_source import BucketSource

        return BucketSource(buckets(site.bucket), BucketLayout.for_site(name, site.prefix))
    if site.root:
        root = Path(site.root)
        return DirectorySource(lambda: root)
    # Resolved per request: `sites publish` and `rollback` switch a symlink.
    return DirectorySource(lambda: current_root(data_dir, name))
