"""Backups in an S3 bucket: `s3://BUCKET/KEY` as where `shoestring backup` writes
and `shoestring restore` and `deploy --restore` read.

boto3 finds the credentials, region and endpoint the standard AWS way, so any
S3 service works and no key of shoestring.toml (a file in git) holds an
account's secret: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile
in ~/.aws (AWS_PROFILE); AWS_REGION; AWS_ENDPOINT_URL_S3 (or
AWS_ENDPOINT_URL, or `endpoint_url` in the profile) for a service other
than AWS.

Another service is addressed path-style (`ENDPOINT/BUCKET/KEY`), which every
S3-compatible service takes, unless the profile sets `addressing_style`; the
storage backend's s3 client does the same.

Transfers go through boto3's transfer manager: files over 8 MB travel as a
multipart upload of several parts at once. S3 shows an object only once its
upload completes, and the transfer manager aborts an upload that failed, so
a bucket never holds half a backup.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from shoestring.deploy.errors import BackupError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"
_RETRIES = Config(retries={"mode": "standard", "max_attempts": 3})
_PATH_STYLE = Config(s3={"addressing_style": "path"})
_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")
_CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, a profile in ~/.aws), "
    "and AWS_ENDPOINT_URL_S3 for an S3 service other than AWS"
)
_SOURCES = {
    "env": "AWS_ACCESS_KEY_ID in the environment",
    "shared-credentials-file": "~/.aws/credentials (profile {profile})",
    "config-file": "~/.aws/config (profile {profile})",
}


@dataclass(frozen=True)
class S3Location:
    """`s3://BUCKET/KEY`: one backup in a bucket."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str, *, default_name: str | None = None) -> S3Location:
        """The location `url` names; a key ending in `/` (or none) gets `default_name`.

        Without `default_name` (reading a backup) the key must name a file.
        """
        if not url.startswith(SCHEME):
            raise BackupError(f"{url!r} is not an S3 location: write s3://BUCKET/KEY")
        bucket, _, key = url.removeprefix(SCHEME).partition("/")
        if not bucket:
            raise BackupError(f"{url!r} names no bucket: write s3://BUCKET/KEY")
        if not key or key.endswith("/"):
            if default_name is None:
                raise BackupError(
                    f"{url} names a folder, not a backup: give the backup's whole key "
                    f"(`aws s3 ls {url.rstrip('/')}/` lists them)"
                )
            key += default_name
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


class BackupBucket:
    """The bucket holding one backup, and the transfers to and from it."""

    def __init__(self, location: S3Location) -> None:
        """BackupError when no credentials are configured: nothing is sent then."""
        try:
            core = botocore.session.get_session()
            session = boto3.session.Session(botocore_session=core)
            credentials = session.get_credentials()
            client = session.client("s3", config=_RETRIES)
            style = core.get_scoped_config().get("s3", {}).get("addressing_style")
            if style is None and not _on_aws(client.meta.endpoint_url):
                client = session.client("s3", config=_RETRIES.merge(_PATH_STYLE))
        except BotoCoreError as exc:
            raise BackupError(
                f"the AWS configuration is unusable ({exc}): {_CREDENTIALS_HELP}"
            ) from None
        if credentials is None:
            raise BackupError(f"no AWS credentials to reach {location}: {_CREDENTIALS_HELP}")
        method = credentials.method
        source = _SOURCES.get(method, "the AWS credentials ({method})")
        self.credentials = source.format(profile=session.profile_name, method=method)
        self.location = location
        self.client: S3Client = client

    def check_writable(self) -> None:
        """Fail now, before a backup is made, if the bucket or the credentials are wrong.

        A key allowed to write but not to list (a common backup policy) passes:
        the upload itself then says whether it may write.
        """
        try:
            self.client.list_objects_v2(
                Bucket=self.location.bucket, Prefix=self.location.key, MaxKeys=1
            )
        except ClientError as exc:
            if _code(exc) != "AccessDenied":
                raise self._failed(exc, writing=True) from None
        except BotoCoreError as exc:
            raise self._unreachable(exc) from None

    def size(self) -> int:
        """The backup's size in bytes; BackupError saying what to do when it cannot be read."""
        bucket, key = self.location.bucket, self.location.key
        try:
            return self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            raise self._diagnose(exc) from None
        except BotoCoreError as exc:
            raise self._unreachable(exc) from None

    def upload(self, path: Path, *, progress: Callable[[int], None] | None = None) -> None:
        """Copy the file at `path` to the location; `progress` is told each chunk sent."""
        try:
            with path.open("rb") as file:
                self.client.upload_fileobj(
                    file,
                    self.location.bucket,
                    self.location.key,
                    ExtraArgs={"ContentType": "application/gzip"},
                    Callback=progress,
                )
        except ClientError as exc:
            raise self._failed(exc, writing=True) from None
        except BotoCoreError as exc:
            raise self._unreachable(exc) from None

    def download(self, path: Path, *, progress: Callable[[int], None] | None = None) -> None:
        """Copy the backup to a new file at `path` (mode 0600: it holds secrets)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                self.client.download_fileobj(
                    self.location.bucket, self.location.key, file, Callback=progress
                )
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, ClientError):
                raise self._diagnose(exc) from None
            if isinstance(exc, BotoCoreError):
                raise self._unreachable(exc) from None
            raise

    def _diagnose(self, exc: ClientError) -> BackupError:
        """The error of a read. HEAD answers carry no error code, so a listing asks again."""
        if _code(exc) not in ("400", "403", "404", "NotFound"):
            return self._failed(exc, writing=False)
        try:
            listed = self.client.list_objects_v2(
                Bucket=self.location.bucket, Prefix=self.location.key, MaxKeys=1
            )
        except ClientError as listing:
            return self._failed(listing, writing=False)
        except BotoCoreError as listing:
            return self._unreachable(listing)
        keys = [item.get("Key") for item in listed.get("Contents", [])]
        if self.location.key not in keys:
            return self._error("NoSuchKey", "", writing=False)
        return self._failed(exc, writing=False)

    def _failed(self, exc: ClientError, *, writing: bool) -> BackupError:
        message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
        return self._error(_code(exc), message, writing=writing)

    def _error(self, code: str, message: str, *, writing: bool) -> BackupError:
        where, bucket = self.location, self.location.bucket
        endpoint = self.client.meta.endpoint_url
        if code in ("NoSuchBucket", "404", "NotFound"):
            return BackupError(
                f"there is no bucket {bucket!r} at {endpoint}: create it "
                f"(`aws s3 mb s3://{bucket}`), or check its name, AWS_REGION and "
                "AWS_ENDPOINT_URL_S3"
            )
        if code == "NoSuchKey":
            return BackupError(
                f"there is no backup at {where}: `aws s3 ls s3://{bucket}/` lists the backups"
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return BackupError(
                f"{endpoint} refused the credentials from {self.credentials} ({code}): "
                f"check them and the service they belong to; {_CREDENTIALS_HELP}"
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            needed = "s3:PutObject" if writing else "s3:GetObject (and s3:ListBucket)"
            return BackupError(
                f"access to {where} is denied to the credentials from {self.credentials}: "
                f"give them {needed} on the bucket, or use other credentials"
            )
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
            return BackupError(
                f"the bucket {bucket!r} is in another region: set AWS_REGION to its region"
            )
        action = "write" if writing else "read"
        return BackupError(f"cannot {action} {where} ({code}: {message})")

    def _unreachable(self, exc: BotoCoreError) -> BackupError:
        if isinstance(exc, ParamValidationError):
            return BackupError(f"{self.location} is not a valid S3 location: {exc}")
        return BackupError(
            f"cannot reach the S3 service at {self.client.meta.endpoint_url} ({exc}): check "
            "the network, and AWS_ENDPOINT_URL_S3 for a service other than AWS"
        )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _on_aws(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "").endswith(_AWS_HOSTS)
