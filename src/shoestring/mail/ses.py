"""Delivery through Amazon SES (`mail.transport = "ses"` or `"ses://REGION"`).

The message goes out as raw MIME through the SESv2 `SendEmail` API, so the
bytes DKIM signed are the bytes SES sends. Credentials and, without a region
in the setting, the region come from the standard AWS environment (variables,
`~/.aws/config`, an instance role). `?endpoint=URL` points the client at an
SES-compatible server instead of AWS.

Errors are translated here: throttling, 5xx and network errors are a
TemporaryFailure; a refused message (unverified sender, suspended or paused
account, invalid request) is a PermanentFailure. AWS's own wording is kept
with every address but the sender's removed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions

from shoestring.mail.errors import MailError, PermanentFailure, TemporaryFailure
from shoestring.mail.transports import without_addresses

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# SESv2 SendEmail takes at most 50 destinations.
MAX_RECIPIENTS = 50

_THROTTLED = {
    "TooManyRequestsException",  # the sending rate
    "LimitExceededException",  # the daily quota
    "Throttling",
    "ThrottlingException",
}
_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "AccessDenied",
    "AccessDeniedException",
}
_REFUSED = {
    "MessageRejected": (
        "SES rejected the message ({detail}): verify the sender's address or domain in SES;"
        " while the account is in the SES sandbox, every recipient must be verified too"
    ),
    "MailFromDomainNotVerifiedException": (
        "SES cannot use the sender's custom MAIL FROM domain ({detail}): publish its MX and SPF"
        " records or remove the custom MAIL FROM domain in the SES console"
    ),
    "AccountSuspendedException": (
        "the SES account is suspended from sending ({detail}): see its reputation page in the"
        " SES console"
    ),
    "SendingPausedException": (
        "sending is paused for this SES account ({detail}): resume it in the SES console or"
        " with `aws sesv2 put-account-sending-attributes --sending-enabled`"
    ),
    "BadRequestException": "SES refused the request as invalid ({detail})",
}


class SESTransport:
    """Sends through the SESv2 API; boto3 blocks, so each call runs in a thread."""

    name = "ses"

    def __init__(
        self, *, region: str | None = None, endpoint_url: str | None = None, timeout: float = 30.0
    ) -> None:
        if region is None and boto3.session.Session().region_name is None:
            raise MailError(
                "mail.transport `ses` needs an AWS region: write `ses://REGION`"
                " (e.g. `ses://eu-west-1`) or set AWS_DEFAULT_REGION"
            )
        self.region = region
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self._client: SESV2Client | None = None
        self._client_lock = threading.Lock()

    async def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        if len(recipients) > MAX_RECIPIENTS:
            raise PermanentFailure(
                f"SES takes at most {MAX_RECIPIENTS} recipients per message, this one has"
                f" {len(recipients)}: send it in smaller groups"
            )
        try:
            await asyncio.to_thread(self._send, sender, recipients, raw)
        except botocore.exceptions.ClientError as exc:
            raise _refusal(exc, sender) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failure(exc, sender) from None

    def _send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        self._client_once().send_email(
            FromEmailAddress=sender,
            Destination={"ToAddresses": recipients},
            Content={"Raw": {"Data": raw}},
        )

    def _client_once(self) -> SESV2Client:
        # Made on first use, in the worker thread: resolving credentials may
        # query the instance metadata service, which must not block the loop.
        with self._client_lock:
            if self._client is None:
                config = botocore.config.Config(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    # The outbox retries with backoff; retrying here too would
                    # multiply the attempts and resend after a read timeout.
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
                self._client = boto3.session.Session().client(
                    "sesv2", region_name=self.region, endpoint_url=self.endpoint_url, config=config
                )
            return self._client

    def _failure(self, exc: botocore.exceptions.BotoCoreError, sender: str) -> MailError:
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            # Its message quotes the parameters, which hold the addresses.
            return PermanentFailure("boto3 refused the SES request's parameters")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return TemporaryFailure(
                "no AWS credentials found for SES: set AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run on an instance with a role"
            )
        detail = without_addresses(str(exc), keep=sender)
        if isinstance(
            exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
        ):
            return TemporaryFailure(f"could not reach SES: {detail}")
        return TemporaryFailure(f"SES client error ({type(exc).__name__}: {detail})")


def _refusal(exc: botocore.exceptions.ClientError, sender: str) -> MailError:
    error = exc.response.get("Error", {})
    code = error.get("Code", "Unknown")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    detail = without_addresses(f"{code}: {error.get('Message', '')}".rstrip(": "), keep=sender)
    if code in _THROTTLED or status == 429:
        return TemporaryFailure(
            f"SES is throttling this account ({detail}): it will be retried; the SES console"
            " shows the sending rate and daily quota, and how to raise them"
        )
    if status >= 500:
        return TemporaryFailure(f"SES failed ({status} {detail}); it will be retried")
    if code in _CREDENTIALS:
        return TemporaryFailure(
            f"SES did not accept the AWS credentials ({detail}): check AWS_ACCESS_KEY_ID or"
            " AWS_PROFILE, and that their IAM policy allows ses:SendEmail"
        )
    template = _REFUSED.get(code, "SES refused the message ({detail})")
    return PermanentFailure(template.format(detail=detail))
