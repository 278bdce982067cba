"""The dev mailbox: mail the `dev` transport kept, browsable over HTTP.

    GET /_dev/mail        the newest messages (HTML for a browser, JSON otherwise)
    GET /_dev/mail/ID     one message: headers, text and HTML parts

Served only with `mail.transport = "dev"` and only to clients on this
machine (loopback): nothing was sent, so this is the only place a developer
sees the confirmation mail their app just wrote.
"""

from __future__ import annotations

import email
import ipaddress
from datetime import UTC, datetime
from email.message import EmailMessage
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from shoestring.errors import HTTPError
from shoestring.http.responses import JSONResponse
from shoestring.mail import policies

if TYPE_CHECKING:
    from shoestring.app import App
    from shoestring.mail.outbox import OutboxEntry

PATH = "/_dev/mail"
LISTED = 100


def serve_dev_mailbox(app: App) -> None:
    async def listing(request: Request) -> Response:
        _loopback_only(request)
        entries = await app.mail.entries(LISTED)
        summaries = [_summary(entry) for entry in entries]
        if not _wants_html(request):
            return JSONResponse({"messages": summaries})
        rows = "".join(
            f'<tr><td><a href="{PATH}/{s["id"]}">{escape(s["subject"] or "(no subject)")}</a></td>'
            f"<td>{escape(', '.join(s['to']))}</td><td>{s['created_at'][:19]}</td></tr>"
            for s in summaries
        )
        return _page(
            "Dev mailbox",
            f"<table><tr><th>subject</th><th>to</th><th>queued (UTC)</th></tr>{rows}</table>",
        )

    async def one(request: Request) -> Response:
        _loopback_only(request)
        entries = await app.mail.entries(1, message_id=request.path_params["id"])
        if not entries or entries[0].message is None:
            raise HTTPError(404, "No such message in the dev mailbox.", code="no_such_message")
        entry = entries[0]
        parsed = email.message_from_string(entry.message or "", policy=policies.DEFAULT)
        assert isinstance(parsed, EmailMessage)
        text, html = _part(parsed, "plain"), _part(parsed, "html")
        if not _wants_html(request):
            headers = {name: str(value) for name, value in parsed.items()}
            return JSONResponse({**_summary(entry), "headers": headers, "text": text, "html": html})
        body = f'<p><a href="{PATH}">all messages</a></p><h1>{escape(entry.subject or "")}</h1>'
        body += f"<p>to {escape(', '.join(entry.recipients))}</p>"
        if text is not None:
            body += f"<pre>{escape(text)}</pre>"
        if html is not None:
            # Sandboxed: the message's HTML shows, its scripts and forms do not run.
            body += f'<iframe sandbox srcdoc="{escape(html, quote=True)}"></iframe>'
        return _page(entry.subject or "message", body)

    app.add_system_route(Route(PATH, listing, methods=["GET"]))
    app.add_system_route(Route(PATH + "/{id}", one, methods=["GET"]))


def _loopback_only(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPError(404, f"No route for GET {request.url.path}.", code="not_found")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _summary(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "from": entry.sender,
        "to": entry.recipients,
        "subject": entry.subject,
        "state": entry.state,
        "created_at": datetime.fromtimestamp(entry.created_at, UTC).isoformat(),
    }


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
        "<style>body{font:15px system-ui;margin:2em}td,th{padding:4px 12px;text-align:left}"
        "pre{white-space:pre-wrap;background:#f4f4f4;padding:1em}"
        "iframe{width:100%;height:60vh;border:1px solid #ccc}</style>"
        f"{body}",
        headers={"Cache-Control": "no-store"},
    )
