"""The exceptions shoestring raises.

    ShoestringError            anything shoestring itself raises
    ├── ConfigError            shoestring.toml or an environment override is invalid
    ├── AppLoadError           the project's `module:attribute` could not be imported
    └── HTTPError              raised by a handler to answer with a status and a message

Every message says what happened and what to do about it; the CLI prints it
as-is, without a traceback.
"""

from __future__ import annotations


class ShoestringError(Exception):
    """Base class of every error shoestring raises on purpose."""


class ConfigError(ShoestringError):
    """The configuration could not be loaded; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class AppLoadError(ShoestringError):
    """The project's app could not be imported or is not an App."""


class HTTPError(ShoestringError):
    """Raise from a handler to answer with `status` and a JSON error body.

    `code` is a stable, machine-readable identifier (`"not_found"`); `message`
    is for people and must not contain personal data.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.code = code or _default_code(status)
        self.headers = headers or {}
        super().__init__(f"{status} {self.code}: {message}")


def _default_code(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"
