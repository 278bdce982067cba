"""Who already has a message, across the retries of one delivery.

A server may accept some recipients of a message and defer others (a 4xx at
RCPT: greylisting, a full mailbox). The message is then delivered to some and
must be retried for the rest only, so nobody gets it twice. A transport
records each recipient's outcome in an `Attempt` and ends with
`Ledger.conclude`, which raises what the outbox needs:

- TemporaryFailure while some recipients are still deferred (the ledger keeps
  the ones settled, so the retry skips them);
- PermanentFailure when all are settled and some were refused for good (5xx),
  with how many and why.

The memory lives in the process: after a restart a retry may reach someone
twice (delivery is at least once).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from shoestring.mail.errors import PermanentFailure, TemporaryFailure

# Messages whose delivery is part done, remembered so a retry skips who has them.
MAX_REMEMBERED = 10_000


@dataclass
class Attempt:
    """One try at delivering a message: what each recipient's server said."""

    key: str
    recipients: list[str]
    # recipient -> None (delivered) or why it was refused for good; from earlier tries too
    settled: dict[str, str | None]
    deferred: list[str] = field(default_factory=list)

    @property
    def unsettled(self) -> list[str]:
        """The recipients this try is for: neither delivered nor refused for good yet."""
        return [r for r in self.recipients if r not in self.settled]

    def delivered(self, recipient: str) -> None:
        self.settled[recipient] = None

    def refused(self, recipient: str, reason: str) -> None:
        """Refused for good (5xx): not retried. `reason` must carry no address."""
        self.settled[recipient] = reason

    def defer(self, reason: str) -> None:
        """Some recipients not settled this time (4xx, unreachable): retried later."""
        self.deferred.append(reason)


class Ledger:
    """The settled recipients of part-delivered messages, the newest MAX_REMEMBERED of them."""

    def __init__(self, size: int = MAX_REMEMBERED) -> None:
        self._size = size
        self._settled: OrderedDict[str, dict[str, str | None]] = OrderedDict()

    def begin(self, sender: str, recipients: list[str], raw: bytes) -> Attempt:
        key = _message_key(sender, raw)
        return Attempt(key, list(recipients), self._settled.pop(key, {}))

    def conclude(self, attempt: Attempt) -> None:
        """Return if every recipient has the message; else raise (see the module docstring)."""
        settled, recipients = attempt.settled, attempt.recipients
        pending = attempt.unsettled
        refused = [reason for reason in settled.values() if reason is not None]
        if pending:
            self._remember(attempt.key, settled)
            delivered = len(settled) - len(refused)
            notes = [f"{delivered} already have it and will not get it twice"] if delivered else []
            notes += [f"{len(refused)} refused for good: {refused[0]}"] if refused else []
            raise TemporaryFailure(
                f"{len(pending)} of {len(recipients)} recipients deferred: "
                + "; ".join(dict.fromkeys(attempt.deferred))
                + (f" ({'; '.join(notes)})" if notes else "")
            )
        if refused:
            raise PermanentFailure(
                f"{len(refused)} of {len(recipients)} recipients refused: "
                + "; ".join(dict.fromkeys(refused))
            )

    def _remember(self, key: str, settled: dict[str, str | None]) -> None:
        if settled:
            self._settled[key] = settled
            while len(self._settled) > self._size:
                self._settled.popitem(last=False)


def _message_key(sender: str, raw: bytes) -> str:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    message_id = parser.parsebytes(raw, headersonly=True).get("Message-ID")
    if message_id:
        return f"{sender}\n{message_id.strip()}"
    return hashlib.sha256(raw).hexdigest()
