"""Document tables vs. the raw driver doing the same statements, in one run.

    python bench/tables.py [--backend sqlite|postgresql|both] [--ops 2000] [--big 1000000]

put and get of 1 KiB items, one client and 32 concurrent clients: shoestring's
Table vs. raw sqlite3 (same statements, WAL, synchronous=FULL) or raw psycopg
(same statements, autocommit transactions); for one client also vs. the raw
driver awaited from the event loop, one thread hop per operation, which is
the least any code pays to keep a blocking driver off the loop. Then a query of 100 items by an
index on a table of --big items: p50/p99 latency. Prints ops/s and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import postgres_schema, timed_threads

from shoestring import App, Settings
from shoestring.config import DatabaseSettings
from shoestring.tables import codec
from shoestring.tables.schema import IndexSpec

BODY = "x" * 1000  # with the key and JSON framing, a ~1 KiB item
CLIENTS = 32


def item(n: int) -> dict[str, object]:
    return {"id": f"item-{n}", "owner": f"user{n % 1000}", "body": BODY}


IX = IndexSpec("owner").column  # the column shoestring keeps the `owner` index in


def upsert_sql(placeholder: str) -> str:
    p = placeholder
    return (
        f'INSERT INTO "tbl_bench" (pk, sk, doc, expires_at, {IX}) VALUES ({p}, {p}, {p}, {p}, {p}) '
        f"ON CONFLICT (pk, sk) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at, {IX} = excluded.{IX}"
    )


def row(n: int) -> tuple[object, ...]:
    value = item(n)
    return (
        codec.sortable(value["id"], "id"),
        "",
        codec.dumps(value),
        None,
        codec.sortable(value["owner"], "o"),
    )


GET_SQL = 'SELECT doc FROM "tbl_bench" WHERE pk = {p} AND sk = {p}'


# -- baselines ------------------------------------------------------------------


def raw_connect(url: str) -> Any:
    if not url.startswith("sqlite"):
        import psycopg

        return psycopg.connect(url, autocommit=True)
    path = url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def raw_op(connection: Any, kind: str, n: int) -> None:
    """One put or get of item `n`: the statements shoestring runs, straight on the driver."""
    sqlite = isinstance(connection, sqlite3.Connection)
    placeholder = "?" if sqlite else "%s"
    if kind == "get":
        key = (codec.sortable(f"item-{n}", "id"), "")
        connection.execute(GET_SQL.format(p=placeholder), key).fetchone()
    elif sqlite:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(upsert_sql(placeholder), row(n))
        connection.execute("COMMIT")
    else:
        with connection.transaction():
            connection.execute(upsert_sql(placeholder), row(n))


def raw_driver(url: str, ops: int, clients: int) -> tuple[float, float]:
    """put/s and get/s of the same statements from `clients` threads, one connection each."""
    per_client = ops // clients

    def run(kind: str) -> float:
        connections = [raw_connect(url) for _ in range(clients)]

        def work(index: int) -> None:
            for i in range(per_client):
                raw_op(connections[index], kind, index * per_client + i)

        elapsed = timed_threads(clients, work)
        for connection in connections:
            connection.close()
        return per_client * clients / elapsed

    return run("put"), run("get")


async def raw_awaited(url: str, ops: int) -> tuple[float, float]:
    """put/s and get/s of one client awaiting each raw operation on a worker thread.

    What any asyncio code pays so that a blocking driver call never stalls
    the event loop: a hop to a thread and back per operation.
    """
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        connection = await loop.run_in_executor(pool, raw_connect, url)
        rates = []
        for kind in ("put", "get"):
            started = time.perf_counter()
            for n in range(ops):
                await loop.run_in_executor(pool, raw_op, connection, kind, n)
            rates.append(ops / (time.perf_counter() - started))
        await loop.run_in_executor(pool, connection.close)
    return rates[0], rates[1]


# -- shoestring -------------------------------------------------------------------


async def ours(app: App, ops: int, clients: int) -> tuple[float, float]:
    table = app.tables["bench"]

    async def run(call: Callable[[int], Awaitable[object]]) -> float:
        per_client = ops // clients

        async def client(index: int) -> None:
            for i in range(per_client):
                await call(index * per_client + i)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return per_client * clients / (time.perf_counter() - started)

    return await run(lambda n: table.put(item(n))), await run(lambda n: table.get(f"item-{n}"))


async def index_latency(app: App, big: int) -> tuple[float, float]:
    table = app.tables["bench"]
    existing = await app.db.fetchone('SELECT count(*) FROM "tbl_bench"')
    have = existing[0] if existing else 0
    batch = 5000
    for start in range(have, big, batch):
        await table.batch_put(item(n) for n in range(start, min(start + batch, big)))
        print(f"\r  filling: {min(start + batch, big):,}/{big:,}", end="", flush=True)
    print()
    timings = []
    for n in range(300):
        started = time.perf_counter()
        page = await table.query(f"user{n % 1000}", index="owner", limit=100)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(page.items) == min(100, big // 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def make_app(url: str, data_dir: Path) -> App:
    app = App("bench", settings=Settings(data_dir=data_dir, database=DatabaseSettings(url=url)))
    app.table("bench", indexes=["owner"])
    return app


async def bench_backend(backend: str, ops: int, big: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        if backend == "sqlite":
            url = f"sqlite:///{directory / 'ours.db'}"
            baseline_url = f"sqlite:///{directory / 'raw.db'}"
        else:
            url = baseline_url = stack.enter_context(postgres_schema())
        app = make_app(url, directory)
        await app.services.start_all()
        if baseline_url != url:  # the baseline gets a table of the same shape
            raw = make_app(baseline_url, directory)
            await raw.services.start_all()
        else:
            raw = app
        print(f"\n{backend}: {ops} ops of 1 KiB items")
        print(
            f"{'clients':>8} {'op':>4} {'shoestring':>12} {'raw driver':>12} {'ratio':>6}"
            f" {'raw, awaited':>13} {'ratio':>6}"
        )
        for clients in (1, CLIENTS):
            for each in {app, raw}:
                async with each.db.transaction() as tx:
                    await tx.execute('DELETE FROM "tbl_bench"')
            put, get = await ours(app, ops, clients)
            async with raw.db.transaction() as tx:
                await tx.execute('DELETE FROM "tbl_bench"')
            raw_put, raw_get = await asyncio.to_thread(raw_driver, baseline_url, ops, clients)
            awaited: tuple[float | None, float | None] = (None, None)
            if clients == 1:
                async with raw.db.transaction() as tx:
                    await tx.execute('DELETE FROM "tbl_bench"')
                awaited = await raw_awaited(baseline_url, ops)
            for name, a, b, c in (
                ("put", put, raw_put, awaited[0]),
                ("get", get, raw_get, awaited[1]),
            ):
                line = f"{clients:>8} {name:>4} {a:>10,.0f}/s {b:>10,.0f}/s {a / b:>6.2f}"
                if c is not None:
                    line += f" {c:>11,.0f}/s {a / c:>6.2f}"
                print(line)
        p50, p99 = await index_latency(app, big)
        print(f"query 100 items by index on {big:,} items: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for each in {app, raw}:
            await each.services.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--ops", type=int, default=2048, help="operations per measurement")
    parser.add_argument("--big", type=int, default=1_000_000, help="items for the index query")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    import uvloop  # the event loop `shoestring run` uses

    for backend in backends:
        uvloop.run(bench_backend(backend, args.ops, args.big))


if __name__ == "__main__":
    main()
