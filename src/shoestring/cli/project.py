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
# What running an example in place leaves behind, never part of a copy.
_SKIPPED = {"__pycache__", "data", ".pytest_cache"}


def templates() -> list[str]:
    """Names of the templates `shoestring new --template` accepts."""
    return sorted(t.name for t in (files("shoestring") / "templates").iterdir() if t.is_dir())


def create_project(directory: Path, template: str = "new") -> list[Path]:
    """Write the template into `directory` (new or empty); return the files written.

    `new` is the skeleton (its `.tmpl` files get the project's name); the
    others are the bundled example apps, copied as they are, data excluded.
    """
    name = directory.name
    if not _PROJECT_NAME.match(name):
        raise ShoestringError(
            f"{name!r} cannot be a project name: use letters, digits, '-' and '_', "
            "starting with a letter"
        )
    if template not in templates():
        raise ShoestringError(f"no template {template!r}; choose one of: {', '.join(templates())}")
    if directory.exists() and any(directory.iterdir()):
        raise ShoestringError(f"{directory} already exists and is not empty: choose another name")
    root = files("shoestring") / "templates"
    sources = _walk(root / template, Path())
    if not any(relative.name == "gitignore.tmpl" for relative, _ in sources):
        # Every project keeps its data directory, secrets included, out of git.
        sources.append((Path("gitignore.tmpl"), root / "new" / "gitignore.tmpl"))
    written: list[Path] = []
    for relative, item in sources:
        stem = relative.name.removesuffix(".tmpl")
        target = directory / relative.parent / _RENAMES.get(stem, stem)
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative.suffix == ".tmpl":
            text = Template(item.read_text("utf-8")).safe_substitute(name=name)
            target.write_text(text, "utf-8")
        else:
            target.write_bytes(item.read_bytes())
        written.append(target)
    return written


def _walk(node: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name not in _SKIPPED:
                found.extend(_walk(child, relative / child.name))
        else:
            found.append((relative / child.name, child))
    return found


@click.command("new")
@click.argument("name", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--template",
    default="new",
    show_default=True,
    type=click.Choice(templates()),
    help="`new`: a skeleton; the others: copies of the bundled example apps.",
)
def new_command(name: Path, template: str) -> None:
    """Create a new project in the directory NAME.

    The skeleton has an app with two routes, shoestring.toml, a test and a
    README; `--template taptapmail` (or another example) starts from a whole
    app instead. Serve it with `shoestring dev NAME`.
    """
    written = create_project(name, template)
    console = Console(highlight=False)
    console.print(f"[green]Created[/] {name}/ with {len(written)} files:")
    for path in written:
        console.print(f"  {path.relative_to(name)}")
    from shoestring.config import load_settings

    port = load_settings(name).server.port  # the example templates each have their own
    console.print(f"\nNext: [bold]shoestring dev {name}[/]  then open http://127.0.0.1:{port}/")
