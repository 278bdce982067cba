"""`app.storage`: buckets on the configured backend, as a service of the App.

The backend is chosen by `[storage] backend` and opened when the app starts;
buckets declared with `app.storage.bucket(name)` are created then if they do
not exist. The S3 API is mounted by `mount_api` (the App does so when it
builds its routes, so `shoestring run` answers S3 clients whether or not the
app's own code touches storage).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from shoestring.services import Health
from shoestring.storage.backend import Backend
from shoestring.storage.bucket import Bucket
from shoestring.storage.credentials import MIGRATIONS, PRESIGN_KEY_ID, KeyStore
from shoestring.storage.errors import BucketAlreadyExists, StorageError
from shoestring.storage.events import Triggers
from shoestring.storage.objects import BucketInfo

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.config import StorageSettings

log = logging.getLogger("shoestring.storage")


class Storage:
    """The App's object storage: `app.storage.bucket("photos")`."""

    name = "storage"

    def __init__(self, app: App) -> None:
        self._app = app
        self._backend: Backend | None = None
        self._declared: dict[str, bool] = {}
        self._api_mounted = False
        self.triggers = Triggers(app)
        app.db.add_migrations(MIGRATIONS)
        self._keys: KeyStore | None = None

    @property
    def settings(self) -> StorageSettings:
        return self._app.settings.storage

    @property
    def keys(self) -> KeyStore:
        """Access keys of the S3 API (`shoestring keys create`)."""
        if self._keys is None:
            # Read settings only now: the App is declared before the runtime configures it.
            configured = self.settings.secret_key_file or "storage-secret.key"
            self._keys = KeyStore(self._app.db, self._app.data_dir / configured)
        return self._keys

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._open_backend()
        return self._backend

    def _open_backend(self) -> Backend:
        settings = self.settings
        if settings.backend == "s3":
            from shoestring.storage.s3 import S3Backend

            return S3Backend(settings)
        from shoestring.storage.fs import FsBackend

        root = self._app.data_dir / (settings.path or "storage")
        return FsBackend(root, max_object_size=settings.max_object_size, fsync=settings.fsync)

    # -- buckets -----------------------------------------------------------

    def bucket(self, name: str, *, public: bool = False) -> Bucket:
        """The bucket `name`, created when the app starts if it does not exist yet.

        `public=True` makes a newly created bucket public-read: anyone may GET
        its objects without signing. An existing bucket keeps its access.
        """
        bucket = Bucket(self, name)
        self._declared[bucket.name] = self._declared.get(bucket.name, False) or public
        return bucket

    async def create_bucket(self, name: str, *, public: bool = False) -> Bucket:
        """Create the bucket `name`; BucketAlreadyExists if it exists."""
        bucket = Bucket(self, name)
        await bucket.create(public=public)
        return bucket

    async def delete_bucket(self, name: str) -> None:
        """Delete the empty bucket `name`; BucketNotEmpty if it holds objects."""
        await Bucket(self, name).delete_bucket()

    async def list_buckets(self) -> list[BucketInfo]:
        return await self.backend.list_buckets()

    # -- presigned URLs ----------------------------------------------------

    def presign(
        self, bucket: str, key: str, method: str, expires: int, *, now: datetime | None = None
    ) -> str:
        """A URL allowing `method` on the object for `expires` seconds, without credentials."""
        direct = self.backend.presign(bucket, key, method, expires, now)
        if direct is not None:
            return direct
        from shoestring.storage.s3api.sigv4 import presign_url

        base = self.public_url()
        return presign_url(
            method=method,
            url=f"{base}/{bucket}/{quote(key, safe='/~')}",
            access_key_id=PRESIGN_KEY_ID,
            secret=self.keys.presign_secret(),
            region=self._signing_region(),
            expires=expires,
            now=now or datetime.now(UTC),
        )

    def public_url(self) -> str:
        """Where clients reach the S3 API (no trailing slash)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        server = self._app.settings.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"http://{host}:{server.port}{self.settings.api_prefix}"

    def _signing_region(self) -> str:
        return self.settings.region

    # -- the S3 API ----------------------------------------------------------

    def mount_api(self) -> None:
        """Serve the S3 API under `storage.api_prefix` (and `storage.api_host`), once."""
        if self._api_mounted:
            return
        from shoestring.storage.s3api import api_routes

        for route in api_routes(self):
            self._app.add_system_route(route)
        self._api_mounted = True

    # -- the Service protocol --------------------------------------------------

    async def start(self) -> None:
        await self.backend.open()
        for name, public in self._declared.items():
            try:
                await Bucket(self, name).create(public=public)
                log.info("created bucket %s", name)
            except BucketAlreadyExists:
                pass

    async def stop(self) -> None:
        if self._backend is not None:
            await self._backend.close()

    async def health(self) -> Health:
        try:
            await self.backend.ping()
        except (StorageError, OSError, RuntimeError) as exc:
            return Health(ok=False, detail=f"storage unavailable: {type(exc).__name__}")
        return Health(ok=True)


def serve_api(app: App) -> None:
    """Mount the S3 API on `app`, unless the app registered a service of its own as `storage`."""
    storage: object = app.storage
    if isinstance(storage, Storage):
        storage.mount_api()
