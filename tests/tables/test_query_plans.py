"""Indexed queries search a B-tree on both backends; they never scan the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def test_index_and_key_queries_use_an_index(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    notes = app.table("notes", indexes=["owner", ("owner", "created")])
    events = app.table("events", key="stream", sort_key="seq")
    async with running(app):
        await notes.batch_put(
            {"id": str(n), "owner": f"user{n % 100}", "created": n} for n in range(5000)
        )
        await events.batch_put({"stream": f"s{n % 50}", "seq": n} for n in range(5000))
        postgres = app.db.dialect == "postgresql"
        if postgres:
            async with app.db.transaction() as tx:
                await tx.execute('ANALYZE "tbl_notes"')
                await tx.execute('ANALYZE "tbl_events"')
        queries = [
            notes.query_sql("user7", index="owner"),
            notes.query_sql("user7", index="owner/created", between=(100, 900), cursor=None),
            events.query_sql("s3", between=(10, 4000)),
            events.query_sql("s3", descending=True),
        ]
        for sql, params in queries:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = await app.db.fetchall(explain + sql, params)
            plan = " ".join(str(part) for row in rows for part in row)
            if postgres:
                assert "Index" in plan and "Seq Scan" not in plan, plan
            else:
                assert "SEARCH tbl_" in plan and "SCAN tbl_" not in plan, plan
                assert "USING" in plan and ("INDEX" in plan or "PRIMARY KEY" in plan), plan
