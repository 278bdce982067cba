"""app.limits: rate limits kept in the database, shared by every process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from shoestring import App, RateLimited, Request, client_network
from shoestring.limits import network
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio


async def test_the_limit_holds_per_name_and_key(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        for _ in range(3):
            await app.limits.hit("login", "ada@example.org", limit=3, per=60)
        with pytest.raises(RateLimited) as refused:
            await app.limits.hit("login", "ada@example.org", limit=3, per=60)
        assert 1 <= refused.value.retry_after <= 60
        # other keys and other limits count on their own
        await app.limits.hit("login", "bob@example.org", limit=3, per=60)
        await app.limits.hit("signup", "ada@example.org", limit=3, per=60)
        # refused hits count too: hammering stays refused
        with pytest.raises(RateLimited):
            await app.limits.hit("login", "ada@example.org", limit=3, per=60)
        # counts need not be durable: they commit with the next commit group, within ms
        for _ in range(200):
            rows = await app.db.database.fetchall("SELECT key, hits FROM shoestring_rate_limits")
            if sum(hits for _, hits in rows) == 7:
                break
            await asyncio.sleep(0.01)
    assert sorted(hits for _, hits in rows) == [1, 1, 5]
    assert not any("example.org" in key for key, _ in rows)  # keys are stored hashed


async def test_a_new_window_starts_afresh(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        # Windows start at multiples of `per`: begin early in one, so that two
        # hits in a row fall into it even on a busy machine.
        await asyncio.sleep(2 - time.time() % 2)
        await app.limits.hit("tick", "k", limit=1, per=2)
        with pytest.raises(RateLimited):
            await app.limits.hit("tick", "k", limit=1, per=2)
        await asyncio.sleep(2 - time.time() % 2 + 0.05)
        await app.limits.hit("tick", "k", limit=1, per=2)


def test_a_handler_over_its_limit_answers_429_with_retry_after(app: App) -> None:
    @app.route("/ping", methods=["POST"])
    async def ping(request: Request) -> dict[str, bool]:
        await app.limits.hit(
            "ping", request.client.host if request.client else "", limit=2, per=3600
        )
        return {"ok": True}

    with TestClient(app) as client:
        assert [client.post("/ping").status_code for _ in range(2)] == [200, 200]
        refused = client.post("/ping")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= 3600  # when this hour's window ends


def test_an_ipv6_client_is_counted_by_its_64_network() -> None:
    # One host can pick any address in its /64: counting each would hold nobody back.
    assert network("2001:db8:1:2::1") == network("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert network("2001:db8:1:2::1") != network("2001:db8:1:3::1")
    assert network("203.0.113.7") != network("203.0.113.8")  # IPv4: each address
    assert network("::ffff:203.0.113.7") == network("203.0.113.7")  # the same client, mapped
    assert network("testclient") == "testclient"  # not an address: counted as it is


async def test_addresses_of_one_ipv6_network_share_a_handlers_limit(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)

    @app.route("/ping", methods=["POST"])
    async def ping(request: Request) -> dict[str, bool]:
        await app.limits.hit("ping", client_network(request), limit=2, per=3600)
        return {"ok": True}

    async def post(address: str) -> int:
        transport = httpx.ASGITransport(app, client=(address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return (await client.post("/ping")).status_code

    async with running(app):
        assert [await post("2001:db8::1"), await post("2001:db8::2")] == [200, 200]
        assert await post("2001:db8::ffff") == 429  # a third address of the same /64
        assert await post("2001:db8:0:1::1") == 200  # another network counts on its own


async def test_inside_a_tables_transaction_the_count_commits_with_it(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    app.tables  # noqa: B018 - started with the app
    async with running(app):
        async with asyncio.timeout(10):  # must not wait on its own transaction
            async with app.tables.transaction():
                await app.limits.hit("signup", "ip", limit=1, per=60)
            with pytest.raises(RateLimited):
                async with app.tables.transaction():
                    await app.limits.hit("signup", "ip", limit=1, per=60)


async def test_the_purge_of_old_counters_runs_inside_a_transaction_too(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shoestring.limits.PURGE_EVERY", 2)
    app = make_app(database_url, tmp_path)
    app.table("notes")
    async with running(app):
        for n in range(4):
            async with app.tables.transaction():  # a purge comes due in here: no waiting on it
                await asyncio.wait_for(app.limits.hit("login", f"ip-{n}", limit=3, per=60), 10)
