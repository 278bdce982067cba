"""`shoestring tables` and `shoestring db`: look at and change data from a terminal.

Items are printed as JSON, one per line, with bytes and datetimes in their
tagged form (`{"$bytes": ...}`), which `tables put` reads back unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table as RichTable

from shoestring.app import App
from shoestring.cli.project_app import load_project, project_option, run_with_app
from shoestring.errors import ShoestringError
from shoestring.tables import TableError, codec


def _parse_key(text: str) -> Any:
    """A key on the command line: a JSON number or quoted string, else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else text


def _item_json(item: dict[str, Any]) -> str:
    return codec.dumps(item)


@click.group("tables")
def tables_group() -> None:
    """List, read and write the app's document tables."""


@tables_group.command("ls")
@project_option
def tables_ls(project_dir: Path) -> None:
    """List the tables the app defines, with their keys, indexes and item counts."""

    async def action(app: App) -> list[tuple[str, str, str, str, int]]:
        rows = []
        for table in app.tables:
            spec = table.spec
            count = await app.db.fetchone(f"SELECT count(*) FROM {spec.sql_name}")  # noqa: S608
            key = spec.key + (f", {spec.sort_key}" if spec.sort_key else "")
            indexes = ", ".join(ix.name for ix in spec.indexes) or "-"
            rows.append((spec.name, key, indexes, spec.ttl or "-", count[0] if count else 0))
        return rows

    table = RichTable("table", "key", "indexes", "ttl", "items")
    for name, key, indexes, ttl, count in run_with_app(project_dir, action):
        table.add_row(name, key, indexes, ttl, str(count))
    Console().print(table)


@tables_group.command("get")
@project_option
@click.argument("table")
@click.argument("key")
@click.argument("sort_key", required=False)
def tables_get(project_dir: Path, table: str, key: str, sort_key: str | None) -> None:
    """Print the item of TABLE with KEY (and SORT_KEY) as JSON; exit 1 if absent.

    KEY is read as JSON when it is a number or a quoted string ('"42"'), else as text.
    """
    full_key = _parse_key(key) if sort_key is None else (_parse_key(key), _parse_key(sort_key))
    item = run_with_app(project_dir, lambda app: app.tables[table].get(full_key))
    if item is None:
        click.echo(f"no item with key {key!r} in {table}", err=True)
        sys.exit(1)
    click.echo(_item_json(item))


@tables_group.command("put")
@project_option
@click.argument("table")
@click.argument("item", default="-")
@click.option("--if-not-exists", is_flag=True, help="Fail if an item with the key exists.")
def tables_put(project_dir: Path, table: str, item: str, if_not_exists: bool) -> None:
    """Store ITEM (a JSON object, or `-` for one per line on stdin) in TABLE.

    Every item is checked first and all are stored in one transaction: all or none.

    \b
    Examples:
      shoestring tables put notes '{"id": "n1", "text": "milk"}'
      shoestring tables scan notes > notes.jsonl && shoestring tables put notes - < notes.jsonl
    """
    if item == "-" and sys.stdin.isatty():
        click.echo("reading items from stdin, one JSON object per line; end with Ctrl-D", err=True)
    lines = sys.stdin.read().splitlines() if item == "-" else [item]
    items = [_item(line, number) for number, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise click.BadParameter("no item given: a JSON object, or one per line on stdin")

    async def action(app: App) -> None:
        target = app.tables[table]
        async with app.tables.transaction():
            for number, one in items:
                try:
                    await target.put(one, if_not_exists=if_not_exists)
                except TableError as exc:
                    where = f"item {number}: " if len(items) > 1 else ""
                    raise TableError(f"{where}{exc}; nothing was stored") from None

    run_with_app(project_dir, action)
    click.echo(f"stored {len(items)} item(s) in {table}", err=True)


def _item(line: str, number: int) -> tuple[int, dict[str, Any]]:
    """Line `number` as an item, or a usage error saying where it is not one."""
    try:
        return number, codec.loads(line)
    except json.JSONDecodeError as exc:
        problem = f"not JSON ({exc.msg} at column {exc.colno})"
    except (ValueError, AssertionError):
        problem = "not a JSON object"
    raise click.BadParameter(f"line {number}: {problem}: items are JSON objects, one per line")


@tables_group.command("scan")
@project_option
@click.argument("table")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 1000),
    help="Print at most this many items.",
)  # fmt: skip
@click.option(
    "--where", multiple=True, metavar="FIELD=JSON", help="Only items whose FIELD equals the value."
)
def tables_scan(project_dir: Path, table: str, limit: int, where: tuple[str, ...]) -> None:
    """Print up to LIMIT items of TABLE as JSON lines, in key order."""
    conditions = {}
    for clause in where:
        field, sep, value = clause.partition("=")
        if not sep:
            raise click.BadParameter(f"{clause!r} is not FIELD=VALUE", param_hint="--where")
        conditions[field] = (
            _parse_key(value) if value not in ("true", "false", "null") else json.loads(value)
        )
    page = run_with_app(
        project_dir, lambda app: app.tables[table].scan(limit=limit, filter=conditions or None)
    )
    for one in page.items:
        click.echo(_item_json(one))


@click.group("db")
def db_group() -> None:
    """The app's database."""


@db_group.command("shell")
@project_option
def db_shell(project_dir: Path) -> None:
    """Open sqlite3 or psql on the app's database."""
    app = load_project(project_dir)
    url = app.db.url
    if app.db.dialect == "sqlite":
        program, args = "sqlite3", [url.removeprefix("sqlite:///")]
        hint = "install it with `apt-get install sqlite3`"
    else:
        program, args = "psql", [url]
        hint = "install it with `apt-get install postgresql-client`"
    path = shutil.which(program)
    if path is None:
        raise ShoestringError(f"{program} is not installed: {hint}")
    os.execv(path, [program, *args])  # noqa: S606 - replaces this process, as a shell should
