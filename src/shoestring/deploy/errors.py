"""The exceptions of backup, restore and deploy.

    ShoestringError
    └── DeployError            anything below; the message says what to do
        ├── BackupError        a backup could not be written or read (a file, S3), or is not valid
        │   └── NothingToBackUp    the host has no release or no data to back up
        ├── RestoreRefused     restoring would overwrite data without --force
        ├── RemoteError        a command on the host failed (its output is in the message)
        └── HealthCheckFailed  a new release did not become ready; the old one still serves

Library errors (asyncssh, boto3, OSError, tarfile) are translated into these at the
boundary, so the CLI prints one short message instead of a traceback.
"""

from __future__ import annotations

from shoestring.errors import ShoestringError


class DeployError(ShoestringError):
    """Base class of deploy, backup and restore errors."""


class BackupError(DeployError):
    """A backup could not be made, or a file is not a complete, intact backup."""


class NothingToBackUp(BackupError):
    """The host has no release, or its data directory is empty: a backup would hold nothing."""


class RestoreRefused(DeployError):
    """Restoring would replace data that is there; the caller must say --force."""


class RemoteError(DeployError):
    """A command on the deploy host failed."""


class HealthCheckFailed(DeployError):
    """The new release never answered /_ready; traffic stayed on the old one."""
