"""inline-cms: texts for other people's web pages, edited in place on those pages.

A page includes one script tag and marks its texts with data attributes:

    <h1 data-content="home.title">Welcome</h1>
    <p data-content="home.greeting" data-content-args='{"name": "Ada"}'>Hello</p>
    <script src="https://cms.example.com/cms.js" data-site="demo" defer></script>

The script fills each element with the published text for the page's language
(`Hello, {name}!` becomes `Hello, Ada!`). An editor opens the page with
`#edit`, signs in with a code sent by mail, edits the texts where they stand
and publishes. Drafts stay apart from what visitors see; publishing writes
one flat JSON file per site and language under `data/published/`, served as
a static site with caching, so pages keep their texts when the editing API is
down (in production Caddy serves those files from disk).

    POST   /api/signin                               {site, email} -> a code by mail
    POST   /api/confirm                              {site, email, code} -> {token}
    POST   /api/signout                              (Bearer token)
    GET    /api/sites/{site}/{locale}/drafts         -> {texts: {key: text}}
    PUT    /api/sites/{site}/{locale}/drafts/{key}   {text}
    DELETE /api/sites/{site}/{locale}/drafts/{key}
    POST   /api/sites/{site}/{locale}/publish        -> {published: n}

Sites, their languages and their editors are listed in `sites.toml`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import tempfile
import time
import tomllib
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field

from shoestring import App, HTTPError, JSONResponse, Request, Table, client_network, read_json

HERE = Path(__file__).resolve().parent
SITES: dict[str, dict[str, Any]] = tomllib.loads(
    (HERE / os.environ.get("INLINE_CMS_SITES", "sites.toml")).read_text()
)
CODE_TTL = 15 * 60  # seconds a sign-in code stays valid
SESSION_DAYS = 30
MAX_TEXTS = 5_000  # per site and language: the file every page loads stays small

app = App("inline-cms")
sessions = app.table("sessions", ttl="expires")  # HMAC(token) -> site, HMAC(address)
drafts = app.table("drafts", key="page", sort_key="key")  # page = "site/locale"
published = app.table("published", key="page", sort_key="key")
publishing: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # by page


# -- requests ----------------------------------------------------------------------


def address(value: str) -> str:
    try:
        # Without SMTPUTF8 (ålice@…): shoestring's mail cannot carry such an address yet.
        valid = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        if not value.rpartition("@")[0].isascii():
            raise ValueError(
                "an address with characters other than ASCII before the @ cannot be mailed yet"
            ) from None
        raise ValueError("not a valid email address") from None
    return valid.normalized.lower()


def untagged(address: str) -> str:
    """`address` without a +tag: ada+1@… and ada+2@… count against one limit, as ada@…."""
    local, _, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


class SignIn(BaseModel):
    site: Annotated[str, Field(max_length=64)]
    email: Annotated[str, Field(max_length=254), AfterValidator(address)]


class Confirm(SignIn):
    code: Annotated[str, Field(pattern=r"^\d{6}$")]


class Text(BaseModel):
    text: Annotated[str, Field(max_length=10_000)]


KEY = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}")  # home.title, nav.items.0


# -- keys and sessions -------------------------------------------------------------


def keyed(*parts: str) -> str:
    return app.secrets.keyed_hash("inline-cms-hmac", *parts)


def site_locale(request: Request) -> tuple[str, str]:
    """The path's site and language, both ones sites.toml lists."""
    site, locale = request.path_params["site"], request.path_params["locale"]
    if site not in SITES or locale not in SITES[site]["locales"]:
        raise HTTPError(404, f"No site {site!r} with language {locale!r}.", code="no_such_page")
    return site, locale


@cache
def editors_of(site: str) -> frozenset[str]:
    """The keyed hashes of the addresses sites.toml lists as `site`'s editors."""
    return frozenset(keyed("address", address(e)) for e in SITES.get(site, {}).get("editors", []))


async def editor_of(request: Request, site: str) -> str:
    """The signed-in editor (a keyed hash of the address), for `site` only, still listed."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    session = await sessions.get(keyed("token", token)) if scheme.lower() == "bearer" else None
    if session is None or session["site"] != site or session["editor"] not in editors_of(site):
        raise HTTPError(401, f"Sign in as an editor of {site}.", code="signed_out")
    editor: str = session["editor"]
    return editor


async def all_texts(table: Table, page: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    cursor = None
    while True:
        batch = await table.query(page, limit=500, cursor=cursor)
        texts.update((item["key"], item["text"]) for item in batch.items)
        if (cursor := batch.cursor) is None:
            return texts


# -- published files ---------------------------------------------------------------


def published_file(site: str, name: str) -> Path:
    """Where a published file goes: the directory `[sites.content]` serves at /content."""
    return Path(app.settings.sites["content"].root) / site / name


def write_file(path: Path, data: bytes) -> None:
    """Replace `path` in one step: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", delete=False) as temporary:
        try:
            temporary.write(data)
            os.fchmod(temporary.fileno(), 0o644)  # for any static server, Caddy included
            temporary.flush()
            os.fsync(temporary.fileno())
            os.replace(temporary.name, path)
        except BaseException:
            os.unlink(temporary.name)
            raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def as_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1).encode()


@app.on_startup
async def describe_sites() -> None:
    # The script reads which languages a site has, and its default (the first).
    for site, config in SITES.items():
        locales = {"default": config["locales"][0], "locales": config["locales"]}
        await asyncio.to_thread(write_file, published_file(site, "locales.json"), as_json(locales))


# -- signing in --------------------------------------------------------------------


@app.route("/api/signin", methods=["POST"])
async def signin(request: Request) -> JSONResponse:
    body = await read_json(request, SignIn)
    # The same limits, the same work and the same answer whoever asks: nobody
    # learns who edits which site, from the status, the body or the time taken.
    await app.limits.hit("signin-ip", client_network(request), limit=20, per=3600)
    await app.limits.hit(
        "signin-address", keyed("address", untagged(body.email)), limit=5, per=3600
    )
    await mail_signin_code.enqueue(body.site, keyed("address", body.email))
    return JSONResponse({"status": "code_sent"}, status_code=202)


@app.job(retries=5)
async def mail_signin_code(site: str, address_key: str) -> None:
    """Mail a sign-in code to the editor of `site` whose address hashes to `address_key`.

    Anyone's sign-in queues this job; only an editor's sends anything. A job's
    arguments are kept as plain JSON in the database (`shoestring_jobs`), not
    removed when it succeeds: the row stays `jobs.keep_finished_hours` (24 by
    default) before it is purged, and a dead job's is never purged. Hence a
    keyed hash as the argument, never the address someone typed; the address
    mailed is the one sites.toml lists.
    """
    listed = (address(editor) for editor in SITES.get(site, {}).get("editors", []))
    email = next((e for e in listed if keyed("address", e) == address_key), None)
    if email is None:
        return  # not an editor of `site`: nothing is sent
    async with app.tables.transaction():  # the code is kept if and only if its mail is queued
        code = await app.codes.issue(f"signin:{site}", email, ttl=CODE_TTL)
        await app.mail.send_template(
            "signin", to=email, code=code, site=site, minutes=CODE_TTL // 60
        )


@app.route("/api/confirm", methods=["POST"])
async def confirm(request: Request) -> dict[str, str]:
    body = await read_json(request, Confirm)
    await app.limits.hit("confirm-ip", client_network(request), limit=30, per=3600)
    await app.codes.redeem(f"signin:{body.site}", body.email, body.code)  # else a 400
    token = secrets.token_urlsafe(24)
    await sessions.put(
        {"id": keyed("token", token), "site": body.site, "editor": keyed("address", body.email),
         "expires": time.time() + SESSION_DAYS * 86400}
    )  # fmt: skip
    return {"token": token}


@app.route("/api/signout", methods=["POST"])
async def signout(request: Request) -> dict[str, str]:
    _, _, token = request.headers.get("authorization", "").partition(" ")
    await sessions.delete(keyed("token", token))
    return {"status": "signed_out"}


# -- drafts and publishing ---------------------------------------------------------


@app.route("/api/sites/{site}/{locale}/drafts", methods=["GET"])
async def list_drafts(request: Request) -> dict[str, Any]:
    site, locale = site_locale(request)
    await editor_of(request, site)
    return {"texts": await all_texts(drafts, f"{site}/{locale}")}


@app.route("/api/sites/{site}/{locale}/drafts/{key}", methods=["PUT", "DELETE"])
async def change_draft(request: Request) -> dict[str, Any]:
    site, locale = site_locale(request)
    editor = await editor_of(request, site)
    key = request.path_params["key"]
    if not KEY.fullmatch(key):
        raise HTTPError(
            422, "A key is dot-separated words of letters, digits, '-' and '_' (home.title).",
            code="invalid_key",
        )  # fmt: skip
    page = f"{site}/{locale}"
    if request.method == "DELETE":
        await drafts.delete((page, key))
        return {"key": key, "draft": None}
    body = await read_json(request, Text)
    await app.limits.hit("drafts", editor, limit=2_000, per=3600)
    await drafts.put(
        {"page": page, "key": key, "text": body.text, "editor": editor, "at": time.time()}
    )
    return {"key": key, "draft": body.text}


@app.route("/api/sites/{site}/{locale}/publish", methods=["POST"])
async def publish(request: Request) -> dict[str, Any]:
    site, locale = site_locale(request)
    await editor_of(request, site)
    page = f"{site}/{locale}"
    async with publishing[page]:  # one publish of a page at a time: files land in order
        async with app.tables.transaction():
            changes = await all_texts(drafts, page)
            texts = {**await all_texts(published, page), **changes}
            if len(texts) > MAX_TEXTS:
                raise HTTPError(
                    409, f"{page} would have {len(texts)} texts; the limit is {MAX_TEXTS}.",
                    code="too_many_texts",
                )  # fmt: skip
            for key, text in changes.items():
                await published.put({"page": page, "key": key, "text": text})
                await drafts.delete((page, key))
        # From the table, whole: a publish that crashed before its file was
        # written is made good by the next one.
        file = published_file(site, f"{locale}.json")
        await asyncio.to_thread(write_file, file, as_json(texts))
    return {"published": len(changes), "texts": len(texts), "url": f"/content/{page}.json"}
