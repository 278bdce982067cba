"""The standard library's email policies, with header classes made once instead of per header.

`email.headerregistry.HeaderRegistry` builds a new class with `type()` for
every header it parses or sets (`registry[name]`), and that was a tenth of
the CPU of `app.mail.send` here. The class it builds depends only on the
header's kind (address, date, unstructured, ...), so it is made once per kind.
"""

from __future__ import annotations

import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry


class _OnceRegistry(HeaderRegistry):
    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made


SMTP = email.policy.SMTP.clone(header_factory=_OnceRegistry())
"""`email.policy.SMTP`: CRLF line endings, for messages sent."""

DEFAULT = email.policy.default.clone(header_factory=_OnceRegistry())
"""`email.policy.default`: for reading messages."""
