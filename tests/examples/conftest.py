"""The bundled example apps, copied out of the repo and served by real `shoestring` processes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.mail.conftest import sink  # noqa: F401 - a real SMTP server, for the examples that mail
from tests.mail.dns import zone  # noqa: F401 - a real DNS server, for othermail's SPF checks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    """A fresh copy of examples/NAME, so its data directory starts empty."""
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return target
