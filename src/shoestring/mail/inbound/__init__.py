"""Received mail: the SMTP server, its spool, `@app.on_mail` handlers, and forwarding."""

from shoestring.mail.inbound.addresses import Refused
from shoestring.mail.inbound.forward import Bounce, Contact, Forwarder, ForwardingError
from shoestring.mail.inbound.message import Attachment, InboundMessage
from shoestring.mail.inbound.rewrite import sent_by
from shoestring.mail.inbound.service import Inbound, MailboxFull

__all__ = [
    "Attachment",
    "Bounce",
    "Contact",
    "Forwarder",
    "ForwardingError",
    "Inbound",
    "InboundMessage",
    "MailboxFull",
    "Refused",
    "sent_by",
]
