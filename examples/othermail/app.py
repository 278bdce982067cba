"""othermail: addresses at our domain that forward to your real mailbox.

    POST   /api/signup            {email}                    mails a code to the real address
    POST   /api/confirm           {email, code}              -> {token}; the browser keeps it
    GET    /api/aliases                                      -> {domain, aliases}
    POST   /api/aliases           {local_part?, note?, expires_in?}  -> the new alias (201)
    PATCH  /api/aliases/ADDRESS   {paused?, note?}
    DELETE /api/aliases/ADDRESS
    POST   /api/signout
    DELETE /api/account                                      every alias, the real address, all sign-ins

(all but signup and confirm with `Authorization: Bearer TOKEN`)

Mail to a live alias is forwarded by shoestring's Forwarder: it goes out
from our domain through a reverse alias per correspondent, so replies come
back through us and leave from the alias. Unknown, deleted, expired and
paused aliases are refused at RCPT time (550); an alias whose owner's
mailbox keeps refusing mail (hard bounces) pauses itself.

Private by design: the real address is stored once, encrypted (a key in
`app.secrets`, outside the database), in the account row forwarding reads
it from; accounts, codes and tokens are keyed hashes. No address is logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote

from cryptography.fernet import Fernet
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field

from shoestring import (
    App,
    ConditionFailed,
    HTTPError,
    JSONResponse,
    Request,
    client_network,
    read_json,
)
from shoestring.mail.inbound import Forwarder, InboundMessage, sent_by

DOMAIN = os.environ.get("OTHERMAIL_DOMAIN", "othermail.example").lower()  # = mail.inbound.domains
PUBLIC_URL = os.environ.get("OTHERMAIL_URL", "http://127.0.0.1:8002").rstrip("/")
CODE_TTL = 15 * 60  # seconds a sign-up code stays valid
CODE_ATTEMPTS = 5  # wrong codes before it is void
TOKEN_DAYS = 180  # a browser stays signed in this long
MIN_EXPIRY = int(os.environ.get("OTHERMAIL_MIN_EXPIRY", 60))  # shortest alias lifetime, seconds
SWEEP_SECONDS = float(os.environ.get("OTHERMAIL_SWEEP_SECONDS", 60))  # how often expiry runs
MAX_ALIASES = 200  # live aliases per account
HARD_BOUNCES = 3  # permanent bounces from the owner's mailbox before an alias pauses itself
# Addresses people expect to reach the service itself, never a user.
RESERVED = {"postmaster", "abuse", "admin", "administrator", "hostmaster", "webmaster", "root",
            "security", "support", "noreply", "no-reply", "mailer-daemon", "dmarc", "info"}  # fmt: skip
RANDOM_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1: easy to read out

app = App("othermail")
forwarder = Forwarder(app, domain=DOMAIN)
accounts = app.table("accounts")  # HMAC(address) -> the address, encrypted
sessions = app.table("sessions", ttl="expires", indexes=["account"])  # HMAC(token) -> account
# address -> account, state, note, counters; "expiring" is set while an expiry is due
aliases = app.table("aliases", indexes=["account", ("expiring", "expires")])


# -- keys ---------------------------------------------------------------------------


@cache
def address_box() -> Fernet:
    # Losing this secret loses every account's real address; keep it with
    # `shoestring secrets set othermail-address-key` in production.
    secret = app.secrets.ensure("othermail-address-key").encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret).digest()))


def keyed(kind: str, value: str) -> str:
    return app.secrets.keyed_hash("othermail-hmac", kind, value)


# -- requests ------------------------------------------------------------------------


def real_address(value: str) -> str:
    try:
        # Without SMTPUTF8 (ålice@…): shoestring's mail cannot carry such an address yet.
        valid = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        if not value.rpartition("@")[0].isascii():
            raise ValueError(
                "an address with characters other than ASCII before the @ cannot be mailed yet"
            ) from None
        raise ValueError("not a valid email address") from None
    address = valid.normalized.lower()
    if address.rpartition("@")[2] == DOMAIN:
        raise ValueError(f"give your real address, not one at {DOMAIN}")
    return address


def untagged(address: str) -> str:
    """`address` without a +tag: ada+1@… and ada+2@… count against one limit, as ada@…."""
    local, _, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def alias_name(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]|\.(?!\.)){0,30}[a-z0-9]|[a-z0-9]", value):
        raise ValueError("use 1-32 letters, digits, '-' and '.', starting and ending with one")
    if value in RESERVED:
        raise ValueError("that name is reserved")
    return value


OneLine = Field(pattern=r"^[^\x00-\x1f\x7f]*$")


class SignUp(BaseModel):
    email: Annotated[str, Field(max_length=254), AfterValidator(real_address)]


class Confirm(SignUp):
    code: Annotated[str, Field(pattern=r"^\d{6}$")]


class NewAlias(BaseModel):
    local_part: Annotated[str, AfterValidator(alias_name)] | None = None
    note: Annotated[str, OneLine, Field(max_length=200)] = ""
    expires_in: Annotated[int, Field(ge=MIN_EXPIRY, le=365 * 86400)] | None = None  # seconds


class AliasChange(BaseModel):
    paused: bool | None = None
    note: Annotated[str, OneLine, Field(max_length=200)] | None = None


async def signed_in(request: Request) -> str:
    """The account of the request's bearer token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    session = await sessions.get(keyed("token", token)) if scheme.lower() == "bearer" else None
    if session is None:
        raise HTTPError(401, "Sign in again: this browser's token is not valid.", code="signed_out")
    account: str = session["account"]
    return account


def shown(alias: dict[str, Any], now: float) -> dict[str, Any]:
    state = alias["state"]
    if state in ("active", "paused") and alias.get("expires") and alias["expires"] <= now:
        state = "expired"  # the sweep may not have run yet
    return {
        "address": alias["id"], "note": alias.get("note", ""), "state": state,
        "paused_reason": alias.get("paused_reason"), "created": alias["created"],
        "expires": alias.get("expires"), "forwarded": alias.get("forwarded", 0),
        "blocked": alias.get("blocked", 0), "bounced": alias.get("bounced", 0),
    }  # fmt: skip


async def owned_alias(request: Request) -> dict[str, Any]:
    account = await signed_in(request)
    alias = await aliases.get(request.path_params["address"].lower())
    if alias is None or alias.get("account") != account:
        raise HTTPError(404, "You have no such alias.", code="no_such_alias")
    return alias


# -- the API -------------------------------------------------------------------------


@app.route("/api/signup", methods=["POST"])
async def signup(request: Request) -> JSONResponse:
    body = await read_json(request, SignUp)
    await app.limits.hit("signup-ip", client_network(request), limit=20, per=3600)
    # Per mailbox: target+1@…, target+2@… are one inbox, and one limit. The mail
    # still goes to the address as typed.
    mailbox_key = keyed("address", untagged(body.email))
    await app.limits.hit("signup-address", mailbox_key, limit=3, per=3600)
    async with app.tables.transaction():  # the code is kept if and only if its mail is queued
        # Keyed per mailbox too: a code's wrong tries count for every +tag of it.
        code = await app.codes.issue("signup", untagged(body.email), ttl=CODE_TTL)
        await app.mail.send_template(
            "confirm", to=body.email, code=code, minutes=CODE_TTL // 60, domain=DOMAIN,
            link=f"{PUBLIC_URL}/#confirm={code}&email={quote(body.email)}",
        )  # fmt: skip
    return JSONResponse({"status": "code_sent"}, status_code=202)


@app.route("/api/confirm", methods=["POST"])
async def confirm(request: Request) -> dict[str, str]:
    body = await read_json(request, Confirm)
    await app.limits.hit("confirm-ip", client_network(request), limit=30, per=3600)
    await app.codes.redeem(
        "signup", untagged(body.email), body.code, attempts=CODE_ATTEMPTS
    )  # else a 400
    address_key = keyed("address", body.email)
    token = secrets.token_urlsafe(24)
    sealed = address_box().encrypt(body.email.encode()).decode()
    async with app.tables.transaction():
        await accounts.update(address_key, set={"sealed": sealed})
        await sessions.put(
            {"id": keyed("token", token), "account": address_key,
             "expires": time.time() + TOKEN_DAYS * 86400}
        )  # fmt: skip
    return {"token": token, "domain": DOMAIN}


@app.route("/api/signout", methods=["POST"])
async def signout(request: Request) -> dict[str, str]:
    await signed_in(request)
    _, _, token = request.headers["authorization"].partition(" ")
    await sessions.delete(keyed("token", token))
    return {"status": "signed_out"}


@app.route("/api/account", methods=["DELETE"])
async def delete_account(request: Request) -> dict[str, str]:
    """Forget the account: its aliases become tombstones (550 for good), its real address,
    its correspondents and every browser's sign-in are deleted."""
    account = await signed_in(request)
    while page := (await aliases.query(account, index="account", limit=100)).items:
        for alias in page:
            await aliases.put({"id": alias["id"], "state": "deleted", "deleted": time.time()})
            await forwarder.forget(alias["id"])
    while signed := (await sessions.query(account, index="account", limit=100)).items:
        for session in signed:
            await sessions.delete(session["id"])
    await accounts.delete(account)
    return {"status": "deleted"}


@app.route("/api/aliases", methods=["GET"])
async def list_aliases(request: Request) -> dict[str, Any]:
    account = await signed_in(request)
    page = await aliases.query(account, index="account", limit=1000)
    now = time.time()
    found = sorted((shown(a, now) for a in page.items), key=lambda a: a["created"], reverse=True)
    return {"domain": DOMAIN, "aliases": found}


@app.route("/api/aliases", methods=["POST"])
async def create_alias(request: Request) -> JSONResponse:
    account = await signed_in(request)
    body = await read_json(request, NewAlias)
    await app.limits.hit("create-alias", account, limit=50, per=3600)
    live = await aliases.query(account, index="account", limit=MAX_ALIASES + 1)
    if len(live.items) >= MAX_ALIASES:
        raise HTTPError(409, f"You have {MAX_ALIASES} aliases; delete some first.", code="too_many_aliases")  # fmt: skip
    now = time.time()
    alias: dict[str, Any] = {"account": account, "state": "active", "note": body.note,
                             "created": now, "forwarded": 0, "blocked": 0, "bounced": 0,
                             "hard_bounces": 0}  # fmt: skip
    if body.expires_in:
        alias |= {"expires": now + body.expires_in, "expiring": "yes"}
    for _ in range(5):
        local = body.local_part or "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(8))
        alias["id"] = f"{local}@{DOMAIN}"
        try:
            # Never reused, even after deletion: an old correspondent must not reach a new owner.
            await aliases.put(alias, if_not_exists=True)
        except ConditionFailed:
            if body.local_part:
                raise HTTPError(409, "That alias is taken; choose another.", code="alias_taken") from None  # fmt: skip
            continue
        return JSONResponse(shown(alias, now), status_code=201)
    raise HTTPError(503, "Could not find a free alias; try again.", code="try_again")


@app.route("/api/aliases/{address}", methods=["PATCH"])
async def change_alias(request: Request) -> dict[str, Any]:
    alias = await owned_alias(request)
    body = await read_json(request, AliasChange)
    changes: dict[str, Any] = {}
    if body.note is not None:
        changes["note"] = body.note
    pausing = body.paused is not None and alias["state"] in ("active", "paused")
    if pausing:
        changes |= {"state": "paused" if body.paused else "active", "hard_bounces": 0}
    if changes:
        remove = ["paused_reason"] if pausing else []
        alias = await aliases.update(alias["id"], set=changes, remove=remove)
    return shown(alias, time.time())


@app.route("/api/aliases/{address}", methods=["DELETE"])
async def delete_alias(request: Request) -> dict[str, str]:
    alias = await owned_alias(request)
    # A tombstone: the address answers 550 for good and is never handed out again.
    await aliases.put({"id": alias["id"], "state": "deleted", "deleted": time.time()})
    await forwarder.forget(alias["id"])
    return {"status": "deleted"}


# -- mail ---------------------------------------------------------------------------


def live(alias: dict[str, Any] | None) -> bool:
    if alias is None or alias["state"] != "active":
        return False
    return not (alias.get("expires") and alias["expires"] <= time.time())


async def owner_of(alias: dict[str, Any]) -> str | None:
    account = await accounts.get(alias.get("account", ""))
    return None if account is None else address_box().decrypt(account["sealed"]).decode()


async def alias_exists(address: str) -> bool:
    """At RCPT time: only live aliases take mail (550 for the rest); refusals are counted."""
    alias = await aliases.get(address.lower())
    if live(alias):
        return True
    if alias is not None and alias["state"] != "deleted":
        await aliases.update(alias["id"], increment={"blocked": 1})
    return False


# The first pattern that matches gets the message: bounces and replies before aliases.
@app.on_mail(forwarder.bounces, accept=forwarder.knows)
async def bounced(message: InboundMessage) -> None:
    bounce = await forwarder.bounce(message)
    if bounce is None or bounce.kind != "forward":
        return  # not a failure, or a correspondent's mailbox refusing a reply
    increment = {"bounced": 1, "hard_bounces": 1 if bounce.permanent else 0}
    async with app.tables.transaction():  # the count and the pause it causes, seen together
        alias = await aliases.update(bounce.alias, increment=increment)
        if alias.get("hard_bounces", 0) >= HARD_BOUNCES and alias["state"] == "active":
            await aliases.update(bounce.alias, set={"state": "paused", "paused_reason": "bounces"})


async def from_the_owner(message: InboundMessage) -> str | None:
    """Before the 250: a reply through a reverse alias must come from the alias's owner.

    Anyone can write the owner's address in a From header; `sent_by` also
    wants SPF or DKIM to vouch for it. A forgery is refused in the session, so
    no bounce goes to an address that may be forged, and it is counted.
    """
    contact = await forwarder.contact(message.recipient)
    alias = None if contact is None else await aliases.get(contact.alias)
    owner = None if alias is None else await owner_of(alias)
    if alias is None or owner is None or sent_by(message, owner):
        return None  # gone since the RCPT (the handler drops it), or genuine
    await aliases.update(alias["id"], increment={"blocked": 1})
    return "Rejected: the sender is not authorized to use this address"


@app.on_mail(forwarder.replies, accept=forwarder.knows, screen=from_the_owner)
async def replied(message: InboundMessage) -> None:
    contact = await forwarder.contact(message.recipient)
    alias = None if contact is None else await aliases.get(contact.alias)
    if contact is None or alias is None or alias["state"] in ("deleted", "expired"):
        return
    if alias.get("expires") and alias["expires"] <= time.time():
        return
    owner = await owner_of(alias)
    if owner is None:
        return
    if not sent_by(message, owner):  # screened before the 250; checked again all the same
        return
    await forwarder.reply(message, contact=contact, owner=owner)


@app.on_mail(f"*@{DOMAIN}", accept=alias_exists)
async def forward(message: InboundMessage) -> None:
    alias = await aliases.get(message.recipient.lower())
    owner = await owner_of(alias) if alias is not None and live(alias) else None
    if alias is None or owner is None:
        return  # paused, expired or deleted since the RCPT
    async with app.tables.transaction():  # counted if and only if it went out
        if await forwarder.forward(message, to=owner) is not None:
            await aliases.update(alias["id"], increment={"forwarded": 1})


@app.every(seconds=SWEEP_SECONDS)
async def expire_aliases() -> None:
    """Expired aliases: marked so, and their correspondents forgotten."""
    while True:
        page = await aliases.query("yes", index="expiring/expires", between=(0, time.time()))
        for alias in page.items:
            await aliases.update(alias["id"], set={"state": "expired"}, remove=["expiring"])
            await forwarder.forget(alias["id"])
        if not page.items:
            return


@app.on_startup
async def check_domain() -> None:
    if DOMAIN not in [d.lower() for d in app.settings.mail.inbound.domains]:
        raise RuntimeError(
            f"othermail forwards for {DOMAIN} (OTHERMAIL_DOMAIN), but mail.inbound.domains is"
            f" {app.settings.mail.inbound.domains}: add it there, or set OTHERMAIL_DOMAIN"
        )
