"""Static sites: files served with CDN-grade caching, SPA routing, atomic publishing.

A site's files live in a directory (`root`), in releases under the data
directory (`shoestring sites publish`), or in releases in a storage bucket
(`bucket`); SiteApp serves all three the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Host, Mount

from shoestring.config import Settings, SiteSettings
from shoestring.sites.files import SiteSource
from shoestring.sites.publish import PublishError, current_root
from shoestring.sites.server import SiteApp

if TYPE_CHECKING:
    from shoestring.storage.bucket import Bucket

__all__ = ["PublishError", "SiteApp", "site_routes"]


def site_routes(settings: Settings, *, buckets: Callable[[str], Bucket]) -> list[BaseRoute]:
    """One route per `[sites.NAME]`: by host if it has one, else by path.

    `buckets(name)` gives the storage bucket of sites configured with `bucket`.
    """
    routes: list[BaseRoute] = []
    for name, site in settings.sites.items():
        source = _source(settings.data_dir, name, site, buckets)
        app = SiteApp(source, spa=site.spa, not_found=site.not_found or None, headers=site.headers)
        mount = Mount(site.path.rstrip("/"), app=app, name=f"site:{name}")
        routes.append(Host(site.host, app=mount) if site.host else mount)
    return routes


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
