"""shoestring's S3-compatible HTTP API (path-style under `/_s3`, or on its own host name)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from shoestring.storage.service import Storage


def api_routes(storage: Storage) -> list[BaseRoute]:
    """The routes serving the S3 API for `storage`, as its settings say."""
    from shoestring.storage.s3api.app import S3Api, S3Route

    settings = storage.settings
    return [S3Route(S3Api(storage), prefix=settings.api_prefix, host=settings.api_host)]
