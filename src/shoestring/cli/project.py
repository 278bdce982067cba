"""`shoestring new`: a working project skeleton to start from."""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

import click
from rich.console import Console

from shoestring.errors import ShoestringError

_PROJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
# Template files are stored without leading dots so packaging keeps them.
_RENAMES = {"gitignore": ".gitignore"}


def create_project(directory: Path, template: str = "new") -> list[Path]:
    """Write the skeleton into `directory` (new or empty); return the files written."""
    name = directory.name
    if not _PROJECT_NAME.match(name):
        raise ShoestringError(
            f"{name!r} cannot be a project name: use letters, digits, '-' and '_', "
            "starting with a letter"
        )
    if directory.exists() and any(directory.iterdir()):
        raise ShoestringError(f"{directory} already exists and is not empty: choose another name")
    source = files("shoestring") / "templates" / template
    written: list[Path] = []
    for relative, item in _walk(source, Path()):
        stem = relative.name.removesuffix(".tmpl")
        target = directory / relative.parent / _RENAMES.get(stem, stem)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(item.read_text("utf-8")).safe_substitute(name=name), "utf-8")
        written.append(target)
    return written


def _walk(node: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                found.extend(_walk(child, relative / child.name))
        else:
            found.append((relative / child.name, child))
    return found


@click.command("new")
@click.argument("name", type=click.Path(file_okay=False, path_type=Path))
def new_command(name: Path) -> None:
    """Create a new project in the directory NAME.

    The skeleton has an app with two routes, shoestring.toml, a test and a
    README. Serve it with `shoestring dev NAME`.
    """
    written = create_project(name)
    console = Console(highlight=False)
    console.print(f"[green]Created[/] {name}/ with {len(written)} files:")
    for path in written:
        console.print(f"  {path.relative_to(name)}")
    console.print(f"\nNext: [bold]shoestring dev {name}[/]  then open http://127.0.0.1:8000/")
