"""Bucket CORS: preflight answers and the headers on actual requests.

https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html — the first
rule matching the origin, method (and, in a preflight, every requested
header) applies; `*` wildcards once in an origin or header.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from shoestring.storage.errors import StorageError
from shoestring.storage.objects import CorsRule
from shoestring.storage.s3api.errors import S3Error
from shoestring.storage.s3api.reply import Reply
from shoestring.storage.s3api.request import S3Request

if TYPE_CHECKING:
    from shoestring.storage.s3api.app import S3Api


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def find_rule(
    rules: tuple[CorsRule, ...], origin: str, method: str, headers: list[str]
) -> CorsRule | None:
    for rule in rules:
        if not any(_matches(o, origin) for o in rule.allowed_origins):
            continue
        if method not in rule.allowed_methods:
            continue
        if all(any(_matches(p, h) for p in rule.allowed_headers) for h in headers):
            return rule
    return None


def _allow_origin(rule: CorsRule, origin: str) -> str:
    return "*" if rule.allowed_origins == ("*",) else origin


async def preflight(api: S3Api, request: S3Request) -> Reply:
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method")
    if not origin or not method or request.bucket is None:
        raise S3Error(
            "InvalidRequest", "a CORS preflight needs Origin and Access-Control-Request-Method"
        )
    asked = [
        h.strip().lower()
        for h in request.headers.get("access-control-request-headers", "").split(",")
        if h.strip()
    ]
    config = await api.bucket_config(request.bucket)
    rule = find_rule(config.cors, origin, method, asked)
    if rule is None:
        raise S3Error("AccessDenied", "CORSResponse: this CORS request is not allowed")
    reply = Reply()
    reply.header("access-control-allow-origin", _allow_origin(rule, origin))
    reply.header("access-control-allow-methods", ", ".join(rule.allowed_methods))
    if asked:
        reply.header("access-control-allow-headers", ", ".join(asked))
    if rule.max_age_seconds is not None:
        reply.header("access-control-max-age", str(rule.max_age_seconds))
    if rule.expose_headers:
        reply.header("access-control-expose-headers", ", ".join(rule.expose_headers))
    reply.header("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method")
    return reply


async def add_headers(api: S3Api, request: S3Request, reply: Reply) -> None:
    """Add CORS headers to the reply of an actual (non-preflight) cross-origin request."""
    if request.method == "OPTIONS" or request.bucket is None:
        return
    try:
        config = await api.bucket_config(request.bucket)
    except StorageError:
        return
    origin = request.headers["origin"]
    rule = find_rule(config.cors, origin, request.method, [])
    if rule is None:
        return
    reply.header("access-control-allow-origin", _allow_origin(rule, origin))
    reply.header("access-control-allow-methods", ", ".join(rule.allowed_methods))
    if rule.expose_headers:
        reply.header("access-control-expose-headers", ", ".join(rule.expose_headers))
    reply.header("vary", "Origin")
