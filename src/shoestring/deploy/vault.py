"""Secrets meant for the deploy host, kept on this machine encrypted at rest.

    <data_dir>/deploy-secrets/<name>                       a Fernet token (0600)
    ~/.config/shoestring/deploy-keys/<project>.key         the key (0600, in a 0700 dir)

The key lives outside the project, so neither git nor a copy of the data
directory (a backup, a synced folder) holds a readable secret. `shoestring
deploy` decrypts each value and sends it on the SSH channel's stdin to
`<data_dir on the host>/secrets/<name>`, readable by the app's user only.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from shoestring.config import Settings
from shoestring.deploy.layout import deploy_secrets_dir
from shoestring.secrets import SecretError, Secrets, check_name


def key_file(project: str) -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "shoestring" / "deploy-keys" / f"{project}.key"


class DeploySecrets:
    """The same calls as Secrets (set, get, names, delete), values encrypted on disk."""

    def __init__(self, directory: Path, key_path: Path) -> None:
        self.files = Secrets(directory)
        self.key_path = key_path

    @classmethod
    def of(cls, settings: Settings, project: str) -> DeploySecrets:
        return cls(deploy_secrets_dir(settings), key_file(project))

    def _fernet(self, *, create: bool) -> Fernet:
        try:
            return Fernet(self.key_path.read_bytes().strip())
        except FileNotFoundError:
            stored = self.names()
            if stored:
                # A new key would leave these unreadable, mixed with values it can read.
                raise SecretError(
                    f"the key of the deploy secrets ({self.key_path}) is missing, and "
                    f"{len(stored)} are stored with it ({', '.join(stored)}): copy the key "
                    "back from the machine that set them, or delete them with "
                    "`shoestring secrets rm --deploy NAME` and set each again"
                ) from None
            if not create:
                raise SecretError(
                    f"the key of the deploy secrets ({self.key_path}) is missing: set the "
                    "secrets with `shoestring secrets set --deploy NAME`"
                ) from None
        key = Fernet.generate_key()
        self.key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(key)
        return Fernet(key)

    def set(self, name: str, value: str) -> None:
        if not value.strip():
            raise SecretError(f"secret {name!r} cannot be empty")
        token = self._fernet(create=True).encrypt(value.strip().encode())
        self.files.set(check_name(name), token.decode())

    def get(self, name: str) -> str:
        try:
            token = (self.files.directory / check_name(name)).read_bytes().strip()
        except FileNotFoundError:
            raise SecretError(
                f"no deploy secret {name!r}: `shoestring secrets set --deploy {name}`"
            ) from None
        try:
            return self._fernet(create=False).decrypt(token).decode()
        except InvalidToken:
            raise SecretError(
                f"deploy secret {name!r} does not open with {self.key_path} (another "
                f"machine's key?): set it again with `shoestring secrets set --deploy {name}`"
            ) from None

    def names(self) -> list[str]:
        return self.files.names()

    def delete(self, name: str) -> bool:
        return self.files.delete(name)
