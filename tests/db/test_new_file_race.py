"""Many processes opening one new SQLite file at once, as `run --workers` does on a new data dir."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from shoestring.db.sqlite import SQLiteDatabase
from shoestring.storage.fs_index import connect as connect_index

PROCESSES = 8
ROUNDS = 25


def _open_when_released(
    opener: Callable[[Path], sqlite3.Connection], path: Path, barrier: object, errors: object
) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        opener(path).close()
    except Exception as exc:
        errors.put(repr(exc))  # type: ignore[attr-defined]


def _database(path: Path) -> sqlite3.Connection:
    return SQLiteDatabase(path).connect()


@pytest.mark.parametrize("opener", [_database, connect_index], ids=["database", "storage index"])
def test_processes_opening_a_new_file_at_once_all_succeed(
    tmp_path: Path, opener: Callable[[Path], sqlite3.Connection]
) -> None:
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_ in range(ROUNDS):
        path = tmp_path / f"{round_}.sqlite"
        barrier = context.Barrier(PROCESSES)
        processes = [
            context.Process(target=_open_when_released, args=(opener, path, barrier, errors))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert errors.empty(), errors.get()
