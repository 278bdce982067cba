"""The S3 API as an ASGI app: find the bucket, key and operation, check the caller, dispatch.

Handlers are plain functions named after S3's operations (`GetObject`,
`CompleteMultipartUpload`) in buckets.py, objects.py and multipart.py, each
taking the API and the request and returning a Reply. Every failure becomes
S3's XML error; none becomes a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from shoestring.logs import request_id_var
from shoestring.storage.errors import InvalidRange, StorageError
from shoestring.storage.objects import BucketConfig
from shoestring.storage.s3api import buckets, cors, multipart, objects
from shoestring.storage.s3api.auth import authenticate, authorize
from shoestring.storage.s3api.errors import S3Error, not_implemented
from shoestring.storage.s3api.reply import Reply, error_reply
from shoestring.storage.s3api.request import S3Request, decode_path
from shoestring.storage.s3api.sigv4 import SignatureError

if TYPE_CHECKING:
    from shoestring.storage.service import Storage

log = logging.getLogger("shoestring.storage.s3api")

Handler = Callable[["S3Api", S3Request], Awaitable[Reply]]

HANDLERS: dict[str, Handler] = {
    **buckets.HANDLERS,
    **objects.HANDLERS,
    **multipart.HANDLERS,
}

# How long a bucket's config (access, CORS) is reused before it is read again:
# anonymous GETs need it on every request, and changes are rare.
CONFIG_TTL = 1.0


# S3's subresources: a query parameter that turns a method into another
# operation (`PUT ?tagging` is PutObjectTagging, no PutObject). One this API
# does not handle for a method must never fall through to that method's
# plain operation: it is answered 501 NotImplemented and changes nothing.
SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
    "metadataConfiguration", "metadataTable", "metrics", "notification", "object-lock",
    "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "renameObject",
    "replication", "requestPayment", "restore", "retention", "select", "session", "tagging",
    "torrent", "uploadId", "uploads", "versioning", "versions", "website",
})  # fmt: skip
HANDLED = {  # (method, on a key?) -> the subresources handled there
    ("GET", False): {"location", "versioning", "cors", "uploads", "versions", "acl"},
    ("PUT", False): {"cors", "acl", "versioning"},
    ("DELETE", False): {"cors"},
    ("POST", False): {"delete"},
    ("GET", True): {"uploadId"},
    ("PUT", True): {"uploadId"},
    ("DELETE", True): {"uploadId"},
    ("POST", True): {"uploads", "uploadId"},
}


def operation(request: S3Request) -> str:
    """S3's name for what the request asks (see the handler modules)."""
    method, query = request.method, request.query
    if request.bucket is None:
        return "ListBuckets" if method == "GET" else "MethodNotAllowed"
    handled = HANDLED.get((method, request.key is not None), set())
    unknown = sorted(name for name in SUBRESOURCES.intersection(query) if name not in handled)
    if unknown:
        return f"{method} ?{unknown[0]}"  # no handler: NotImplemented
    if request.key is None:
        if method == "GET":
            for sub, name in (
                ("location", "GetBucketLocation"), ("versioning", "GetBucketVersioning"),
                ("cors", "GetBucketCors"), ("uploads", "ListMultipartUploads"),
                ("versions", "ListObjectVersions"), ("acl", "GetBucketAcl"),
            ):  # fmt: skip
                if sub in query:
                    return name
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        if method == "PUT":
            for sub, name in (
                ("cors", "PutBucketCors"),
                ("acl", "PutBucketAcl"),
                ("versioning", "PutBucketVersioning"),
            ):
                if sub in query:
                    return name
            return "CreateBucket"
        if method == "DELETE":
            return "DeleteBucketCors" if "cors" in query else "DeleteBucket"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return "MethodNotAllowed"
    if method in ("GET", "HEAD"):
        if "uploadId" in query and method == "GET":
            return "ListParts"
        return "GetObject" if method == "GET" else "HeadObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in request.headers else "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in request.headers else "PutObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    return "MethodNotAllowed"


class S3Api:
    """The ASGI app behind `/_s3` (path-style) and `storage.api_host` (virtual-host style)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._configs: dict[str, tuple[float, BucketConfig]] = {}

    async def bucket_config(self, name: str) -> BucketConfig:
        now = time.monotonic()
        cached = self._configs.get(name)
        if cached is not None and now - cached[0] < CONFIG_TTL:
            return cached[1]
        config = await self.storage.backend.bucket_config(name)
        self._configs[name] = (now, config)
        return config

    def forget_config(self, name: str) -> None:
        self._configs.pop(name, None)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, bucket: str | None, raw_key: str | None,
        raw_path: str,
    ) -> None:  # fmt: skip
        request_id = request_id_var.get() or ""
        request: S3Request | None = None
        try:
            key = decode_path(raw_key) if raw_key else None
            name = decode_path(bucket) if bucket else None
            request = S3Request.from_scope(scope, receive, name, key, raw_path)
            reply = await self._dispatch(request)
        except S3Error as exc:
            reply = error_reply(exc.code, exc.message, exc.status, _resource(request), request_id)
        except StorageError as exc:
            error = S3Error.from_storage(exc)
            reply = error_reply(
                error.code, error.message, error.status, _resource(request), request_id
            )
            if isinstance(exc, InvalidRange) and exc.size is not None:
                reply.header("content-range", f"bytes */{exc.size}")
        except SignatureError as exc:
            error = S3Error(exc.code, exc.message)
            reply = error_reply(
                error.code, error.message, error.status, _resource(request), request_id
            )
        except UnicodeDecodeError:
            reply = error_reply("InvalidURI", "the path is not valid UTF-8", 400, "", request_id)
        except Exception:
            # The message says which operation; keys and headers may be personal data.
            log.exception("S3 API %s failed", request.operation if request else "request")
            reply = error_reply(
                "InternalError", "we encountered an internal error; please try again",
                500, _resource(request), request_id,
            )  # fmt: skip
        if request is not None and reply.status >= 400 and not request._consumed:
            # An unread upload body must not be left for the next request on the connection.
            reply.header("connection", "close")
        reply.header("x-amz-request-id", request_id)
        if request is not None and "origin" in request.headers and request.bucket:
            await cors.add_headers(self, request, reply)
        if request is not None and request.method == "HEAD":
            reply.head = True
            if reply.status >= 400:
                reply.body = b""
        await reply.send(send)

    async def _dispatch(self, request: S3Request) -> Reply:
        if request.method == "OPTIONS":
            return await cors.preflight(self, request)
        request.operation = operation(request)
        handler = HANDLERS.get(request.operation)
        if handler is None:
            if request.operation == "MethodNotAllowed":
                raise S3Error("MethodNotAllowed", f"{request.method} is not allowed here")
            raise not_implemented(request.operation)
        settings = self.storage.settings
        request.caller = await authenticate(request, self.storage.keys, settings.clock_skew)
        public = False
        if request.caller.key is None and request.bucket is not None:
            public = (await self.bucket_config(request.bucket)).access == "public-read"
        authorize(request, public)
        return await handler(self, request)


def _resource(request: S3Request | None) -> str:
    return request.resource if request is not None else ""


class S3Route(BaseRoute):
    """Claims requests under `prefix` (path-style) or for `host` and `BUCKET.host`."""

    def __init__(self, api: S3Api, *, prefix: str, host: str = "") -> None:
        self.api = api
        self.prefix = prefix.rstrip("/")
        self.host = host.lower()
        # Only under `/_s3`-like paths, unless it also answers on a host name of its own.
        self.reserved_only = self.prefix.startswith("/_") and not self.host

    def _host(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"host":
                host: str = value.decode("latin-1").lower()
                return host.rsplit(":", 1)[0]
        return ""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        # A bucket's virtual host comes first: there, every path is a key (a key
        # may well start with `_s3/`), never the path-style prefix.
        host = self._host(scope) if self.host else ""
        if self.host and host.endswith("." + self.host):
            return Match.FULL, {"shoestring.s3": ("virtual", host[: -len(self.host) - 1])}
        path: str = scope["path"]
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return Match.FULL, {"shoestring.s3": ("path", self.prefix)}
        if host and host == self.host:
            return Match.FULL, {"shoestring.s3": ("path", "")}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        style, value = scope["shoestring.s3"]
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if raw else scope["path"]
        raw_path = raw_path.split("?", 1)[0]
        if style == "virtual":
            key = raw_path[1:] or None
            await self.api.handle(scope, receive, send, value, key, raw_path)
            return
        rest = raw_path[len(value) :].lstrip("/") if raw_path.startswith(value) else ""
        bucket, _, key = rest.partition("/")
        await self.api.handle(scope, receive, send, bucket or None, key or None, raw_path)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)
