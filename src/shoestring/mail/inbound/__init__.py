"""Received mail: the SMTP server, its spool, and `@app.on_mail` handlers."""

from shoestring.mail.inbound.addresses import Refused
from shoestring.mail.inbound.message import Attachment, InboundMessage
from shoestring.mail.inbound.service import Inbound, MailboxFull

__all__ = ["Attachment", "Inbound", "InboundMessage", "MailboxFull", "Refused"]
