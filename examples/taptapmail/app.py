"""taptapmail: send a note or a link to your own inbox from any device.

    POST /register   {email, device_name}        mails a confirmation code
    POST /confirm    {email, code}               -> {client_id}; the device keeps it
    POST /send       {client_id, email, subject?, text | url}
    POST /unregister {client_id, email}

Private by design: the database holds a keyed hash (HMAC-SHA256) of each
confirmed address and of each client id, never the address, the client id or
a note. The key is a shoestring secret, outside the database. A send goes out
only when the address hashes to the one confirmed for that client id.

Mail is the exception while it waits: the outbox holds a message's address and
body until it is delivered, then deletes them. The `dev` transport never
delivers, so it keeps every mail for the developer to read at /_dev/mail.
"""

from __future__ import annotations

import hmac
import os
import unicodedata
import uuid
from typing import Annotated
from urllib.parse import quote, urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, model_validator

from shoestring import App, HTTPError, JSONResponse, Request, client_network, read_json

CODE_TTL = int(os.environ.get("TAPTAPMAIL_CODE_TTL", 15 * 60))  # seconds a code stays valid
CODE_ATTEMPTS = 5  # wrong codes before it is void
PUBLIC_URL = os.environ.get("TAPTAPMAIL_URL", "http://127.0.0.1:8000").rstrip("/")

app = App("taptapmail")
devices = app.table("devices")  # id: HMAC(client id) -> HMAC(address)


# -- requests -------------------------------------------------------------------


def normalized_address(value: str) -> str:
    try:
        # Without SMTPUTF8 (ålice@…): shoestring's mail cannot carry such an address yet.
        address = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        if not value.rpartition("@")[0].isascii():
            raise ValueError(
                "an address with characters other than ASCII before the @ cannot be mailed yet"
            ) from None
        raise ValueError("not a valid email address") from None
    return address.normalized.lower()


def untagged(address: str) -> str:
    """`address` without a +tag: ada+1@… and ada+2@… count against one limit, as ada@…."""
    local, _, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


# The device name goes into mail to an address not yet confirmed, so anyone can
# make us send it to anyone: a short plain name, never a link, an address or a
# quote that could pass for our own words ("x". URGENT: see https://…). Letters
# are those of alphabets with upper and lower case (Lu, Ll, Lt): other letter
# categories hold look-alikes of '.', ':' and '/' (U+A4F8, U+02D0, U+141F). The
# typographic apostrophe (U+2019) is let in: phones type it for an apostrophe.
DEVICE_NAME_PUNCTUATION = frozenset(" -_'\u2019()")


def device_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value.strip())
    plain = all(
        ch in DEVICE_NAME_PUNCTUATION or unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Nd")
        for ch in value
    )
    if not (plain and 1 <= len(value) <= 40 and any(ch.isalnum() for ch in value)):
        raise ValueError("use 1-40 letters, digits, spaces and - _ ' ( ), as in \"Ada's phone\"")
    return value


Address = Annotated[str, Field(max_length=254), AfterValidator(normalized_address)]
OneLine = Field(pattern=r"^[^\x00-\x1f\x7f]*$")  # no line breaks or control characters


class Register(BaseModel):
    email: Address
    device_name: Annotated[str, Field(max_length=200), AfterValidator(device_name)]


class Confirm(BaseModel):
    email: Address
    code: Annotated[str, Field(pattern=r"^\d{6}$")]


class Unregister(BaseModel):
    client_id: uuid.UUID
    email: Address


class Send(Unregister):
    subject: Annotated[str, OneLine, Field(max_length=200)] | None = None
    text: Annotated[str, Field(max_length=20_000)] | None = None
    url: Annotated[str, Field(max_length=4_000)] | None = None

    @model_validator(mode="after")
    def text_or_url(self) -> Send:
        if not (self.text or self.url):
            raise ValueError("give text, url or both")
        if self.url and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("url must start with http:// or https://")
        return self


# -- keyed hashes -----------------------------------------------------------------


def keyed(kind: str, value: str) -> str:
    """HMAC-SHA256 of `value` with the app's secret; `kind` keeps codes, ids and addresses apart."""
    # The key is made on first use and kept in the data directory, or set in production
    # with `shoestring secrets set taptapmail-hmac`. Losing it voids every registration.
    return app.secrets.keyed_hash("taptapmail-hmac", kind, value)


NOT_REGISTERED = HTTPError(
    403, "This client id is not registered for that address.", code="not_registered"
)


async def registered_device(client_id: uuid.UUID, address: str) -> str:
    """The device row's key; the same refusal whether the id is unknown or the address differs."""
    device_key = keyed("client", str(client_id))
    device = await devices.get(device_key)
    if device is None or not hmac.compare_digest(device["address"], keyed("address", address)):
        raise NOT_REGISTERED
    return device_key


# -- routes -----------------------------------------------------------------------


@app.route("/register", methods=["POST"])
async def register(request: Request) -> JSONResponse:
    body = await read_json(request, Register)
    await app.limits.hit("register-ip", client_network(request), limit=20, per=3600)
    # Per mailbox: target+1@…, target+2@… are one inbox, and one limit. The mail
    # still goes to the address as typed.
    mailbox_key = keyed("address", untagged(body.email))
    await app.limits.hit("register-address", mailbox_key, limit=3, per=3600)
    async with app.tables.transaction():  # the code is kept if and only if its mail is queued
        # Keyed per mailbox too: a code's wrong tries count for every +tag of it.
        code = await app.codes.issue("register", untagged(body.email), ttl=CODE_TTL)
        await app.mail.send_template(
            "confirm",
            to=body.email,
            code=code,
            device_name=body.device_name,
            minutes=CODE_TTL // 60,
            link=f"{PUBLIC_URL}/#confirm={code}&email={quote(body.email)}",
        )
    # The same answer for a new address and a registered one: no way to probe who uses us.
    return JSONResponse({"status": "code_sent"}, status_code=202)


@app.route("/confirm", methods=["POST"])
async def confirm(request: Request) -> dict[str, str]:
    body = await read_json(request, Confirm)
    await app.limits.hit("confirm-ip", client_network(request), limit=30, per=3600)
    await app.codes.redeem(
        "register", untagged(body.email), body.code, attempts=CODE_ATTEMPTS
    )  # else 400
    client_id = str(uuid.uuid4())
    address_key = keyed("address", body.email)
    await devices.put({"id": keyed("client", client_id), "address": address_key})
    return {"client_id": client_id}


@app.route("/send", methods=["POST"])
async def send(request: Request) -> JSONResponse:
    body = await read_json(request, Send)
    await app.limits.hit("send-ip", client_network(request), limit=300, per=3600)
    await registered_device(body.client_id, body.email)
    await app.limits.hit("send-client", keyed("client", str(body.client_id)), limit=100, per=3600)
    text = "\n\n".join(part for part in (body.text, body.url) if part)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first_line = "".join(ch for ch in first_line if ch.isprintable())
    subject = body.subject or first_line[:80] or "A note to self"
    await app.mail.send(to=body.email, subject=subject, text=text)
    return JSONResponse({"status": "queued"}, status_code=202)


@app.route("/unregister", methods=["POST"])
async def unregister(request: Request) -> dict[str, str]:
    body = await read_json(request, Unregister)
    await app.limits.hit("unregister-ip", client_network(request), limit=30, per=3600)
    await devices.delete(await registered_device(body.client_id, body.email))
    return {"status": "unregistered"}
