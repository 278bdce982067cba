"""`app.secrets`: values the app needs that must never reach git or the database.

    key = app.secrets.ensure("hmac-key")   # made (random) on first use, then kept
    token = app.secrets.get("stripe-token")  # set by `shoestring secrets set stripe-token`
    stored = app.secrets.keyed_hash("hmac-key", "address", email)  # HMAC-SHA256, hex

A secret is read from, first found wins:

1. the environment: `SHOESTRING_SECRET_<NAME>` (upper case, `-` as `_`);
2. `<data_dir>/secrets/<name>`: a file only its owner can read (0600, in a
   0700 directory), written by `shoestring secrets set` or by `ensure`.

A secret named like a setting's environment variable (`SHOESTRING_MAIL__TRANSPORT`)
is a setting's value instead: the config reads it over shoestring.toml (and
under the environment), so an SMTP relay's password or an S3 secret key need
not be in a file git sees; `shoestring secrets set --deploy` takes it to the host.

The data directory is outside git (the project's .gitignore says so) and
outside the database, so a database dump or a leaked repository holds no
secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets as random_source
from collections.abc import Callable
from pathlib import Path

from shoestring.errors import ShoestringError

SECRET_ENV_PREFIX = "SHOESTRING_SECRET_"  # noqa: S105 - a variable name prefix
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A setting's environment variable: stored as a secret, it sets that setting
# (an SMTP relay's URL with its password, say) without it being in git.
_SETTING = re.compile(r"^SHOESTRING_[A-Z0-9]+(?:__?[A-Z0-9]+)*$")


class SecretError(ShoestringError):
    """A secret is missing or its name is not allowed."""


def is_setting(name: str) -> bool:
    """Whether the secret `name` holds a setting (`SHOESTRING_MAIL__TRANSPORT`) for the config."""
    return bool(_SETTING.match(name)) and not name.startswith(SECRET_ENV_PREFIX)


def check_name(name: str) -> str:
    if not (_NAME.match(name) or is_setting(name)):
        raise SecretError(
            f"{name!r} cannot be a secret name: use 1-64 lower-case letters, digits, '-' and "
            "'_', or a setting's environment variable (SHOESTRING_MAIL__TRANSPORT) to keep "
            "that setting's value out of shoestring.toml"
        )
    return name


def setting_secrets(directory: Path) -> dict[str, str]:
    """The secrets in `directory` that hold settings: environment variable -> value."""
    try:
        files = [path for path in directory.iterdir() if is_setting(path.name)]
    except OSError:  # no secrets yet, or not ours to read
        return {}
    return {path.name: path.read_text("utf-8").strip() for path in files}


def environment_variable(name: str) -> str:
    return SECRET_ENV_PREFIX + name.upper().replace("-", "_")


class Secrets:
    """The secrets of one project (see the module docstring)."""

    def __init__(
        self, directory: Path, on_ensure: Callable[[str, str], None] | None = None
    ) -> None:
        self.directory = directory
        self._on_ensure = on_ensure  # told (name, value) of each secret `ensure` returns
        self._hash_keys: dict[str, bytes] = {}

    def get(self, name: str) -> str:
        """The secret `name`; SecretError, saying how to set it, if it is not set."""
        value = self.find(name)
        if value is None:
            raise SecretError(
                f"secret {name!r} is not set: run `shoestring secrets set {name}` "
                f"or set {environment_variable(name)}"
            )
        return value

    def find(self, name: str) -> str | None:
        """The secret `name`, or None if it is not set."""
        from_environment = os.environ.get(environment_variable(check_name(name)))
        if from_environment:
            return from_environment
        try:
            return (self.directory / name).read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None

    def ensure(self, name: str, *, nbytes: int = 32) -> str:
        """The secret `name`, made from `nbytes` random bytes the first time it is asked for.

        Several processes may ask at once: the first file written wins and
        every process reads that one.
        """
        value = self.find(name)
        if value is None:
            self._write(name, random_source.token_urlsafe(nbytes), replace=False)
            value = self.get(name)
        if self._on_ensure is not None:
            self._on_ensure(name, value)
        return value

    def keyed_hash(self, name: str, *parts: str) -> str:
        """HMAC-SHA256 (hex) of `parts`, joined by NUL, keyed with the secret `name` (`ensure`d).

        For keeping something by a value the database must not hold (an address,
        a token, a code): the same parts always give the same hash, and without
        the secret nobody can tell what it stands for. The key is read once per
        process; changing it voids every hash made with it.
        """
        key = self._hash_keys.get(name)
        if key is None:
            key = self._hash_keys[name] = self.ensure(name).encode()
        return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    def set(self, name: str, value: str) -> None:
        """Store `value` as the secret `name`, replacing any earlier value."""
        if not value.strip():
            raise SecretError(f"secret {name!r} cannot be empty")
        self._write(check_name(name), value.strip(), replace=True)

    def delete(self, name: str) -> bool:
        try:
            (self.directory / check_name(name)).unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        """Names of the secrets stored in the directory (the environment's are not listed)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p.name for p in self.directory.iterdir() if _NAME.match(p.name) or is_setting(p.name)
        )

    def _write(self, name: str, value: str, *, replace: bool) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        write_private(self.directory / name, value.encode("utf-8"), replace=replace)


def write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `path` (mode 0600) whole or not at all, even with other processes at it.

    A private temporary file is written and fsync'd, then renamed over `path`
    (`replace`) or linked to it only if `path` does not exist yet, so the
    first writer wins and nobody ever reads a half-written file.
    """
    temporary = path.with_name(f".{path.name}.{random_source.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
