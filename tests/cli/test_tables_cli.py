from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli as shoestring

APP = """
from shoestring import App

app = App("clidemo")
notes = app.table("notes", indexes=["owner"])
events = app.table("events", key="stream", sort_key="seq")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def test_put_get_scan_round_trip(project: Path) -> None:
    item = {"id": "n1", "owner": "ada", "blob": {"$bytes": "AAE="}, "n": 1.5}
    put = shoestring(project, "tables", "put", "notes", json.dumps(item))
    assert put.returncode == 0, put.stderr
    many = "\n".join(json.dumps({"stream": "s", "seq": n}) for n in range(3))
    assert shoestring(project, "tables", "put", "events", stdin=many).returncode == 0

    got = shoestring(project, "tables", "get", "notes", "n1")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == item  # bytes come back in their tagged form
    assert json.loads(shoestring(project, "tables", "get", "events", "s", "2").stdout)["seq"] == 2

    scanned = shoestring(project, "tables", "scan", "events", "--where", "seq=1")
    assert [json.loads(line) for line in scanned.stdout.splitlines()] == [{"stream": "s", "seq": 1}]

    listed = shoestring(project, "tables", "ls")
    assert "notes" in listed.stdout and "owner" in listed.stdout and "events" in listed.stdout


def test_missing_item_and_unknown_table_are_clear(project: Path) -> None:
    missing = shoestring(project, "tables", "get", "notes", "nope")
    assert missing.returncode == 1
    assert "no item with key 'nope' in notes" in missing.stderr
    unknown = shoestring(project, "tables", "get", "nothing", "x")
    assert unknown.returncode == 1
    assert "no table 'nothing'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_put_refuses_bad_json_and_if_not_exists_conflicts(project: Path) -> None:
    bad = shoestring(project, "tables", "put", "notes", "{not json")
    assert bad.returncode == 2
    assert "JSON objects" in bad.stderr
    assert shoestring(project, "tables", "put", "notes", '{"id": "a"}').returncode == 0
    again = shoestring(project, "tables", "put", "notes", '{"id": "a"}', "--if-not-exists")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_put_from_stdin_says_which_line_is_wrong_and_stores_all_or_nothing(
    project: Path,
) -> None:
    broken = shoestring(project, "tables", "put", "notes", stdin='{"id": "a"}\n{"id": "b",\n')
    assert broken.returncode == 2 and "line 2: not JSON" in broken.stderr, broken.stderr
    keyless = shoestring(project, "tables", "put", "notes", stdin='{"id": "a"}\n{"x": 1}\n')
    assert keyless.returncode == 1
    assert "item 2" in keyless.stderr and "nothing was stored" in keyless.stderr
    assert shoestring(project, "tables", "scan", "notes").stdout == ""  # not even item 1
    empty = shoestring(project, "tables", "put", "notes", stdin="")
    assert empty.returncode == 2 and "no item given" in empty.stderr
