"""app.codes: one-time codes, stored as keyed hashes, counted per try, used once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoestring import InvalidCode, RateLimited
from tests.backends import make_app, running

pytestmark = pytest.mark.anyio

ADA = "ada@example.org"


async def test_a_code_works_once_for_its_purpose_and_key(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        code = await app.codes.issue("signin", ADA)
        assert len(code) == 6 and code.isdigit()
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", "bob@example.org", code)  # another key
        with pytest.raises(InvalidCode):
            await app.codes.redeem("delete-account", ADA, code)  # another purpose
        await app.codes.redeem("signin", ADA, code)
        with pytest.raises(InvalidCode) as again:
            await app.codes.redeem("signin", ADA, code)  # used up
        assert (again.value.status, again.value.code) == (400, "invalid_code")
        rows = await app.db.database.fetchall("SELECT key, code FROM shoestring_codes")
    assert rows == []  # a used code leaves nothing behind


async def test_wrong_tries_void_the_code_even_the_right_one_after(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        code = await app.codes.issue("signin", ADA)
        stored = await app.db.database.fetchall("SELECT key, code FROM shoestring_codes")
        assert len(stored) == 1 and ADA not in stored[0][0] and code not in stored[0][1]
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(3):
            with pytest.raises(InvalidCode):
                await app.codes.redeem("signin", ADA, wrong, attempts=3)
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, code, attempts=3)
        # a new code replaces the old one, with its tries counted afresh
        fresh = await app.codes.issue("signin", ADA)
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, wrong if fresh != wrong else "222222", attempts=3)
        await app.codes.redeem("signin", ADA, fresh, attempts=3)


async def test_asking_again_sends_the_live_code_with_its_tries_still_counted(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        code = await app.codes.issue("signin", ADA)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(2):
            with pytest.raises(InvalidCode):
                await app.codes.redeem("signin", ADA, wrong, attempts=3)
        # someone asks again (the owner, or anyone typing the address): the mail
        # already sent keeps working, and the guesser gets no fresh tries
        assert await app.codes.issue("signin", ADA) == code
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, wrong, attempts=3)
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, code, attempts=3)  # voided by the third
        fresh = await app.codes.issue("signin", ADA)
        await app.codes.redeem("signin", ADA, fresh, attempts=3)


async def test_wrong_tries_are_capped_per_key_and_day_across_codes(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        for _ in range(2):  # two codes, each voided by its two wrong tries
            code = await app.codes.issue("signin", ADA)
            wrong = "000000" if code != "000000" else "111111"
            for _ in range(2):
                with pytest.raises(InvalidCode):
                    await app.codes.redeem("signin", ADA, wrong, attempts=2, failures_per_day=4)
        code = await app.codes.issue("signin", ADA)
        with pytest.raises(RateLimited) as refused:
            await app.codes.redeem("signin", ADA, code, attempts=2, failures_per_day=4)
        assert refused.value.status == 429
        # another key is not held back by this one's guessers
        other = await app.codes.issue("signin", "bob@example.org")
        await app.codes.redeem("signin", "bob@example.org", other, failures_per_day=4)


async def test_a_code_expires(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        code = await app.codes.issue("signin", ADA, ttl=0.2)
        await asyncio.sleep(0.3)
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, code)


async def test_a_code_redeemed_twice_at_once_lets_one_in(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path)
    async with running(app):
        code = await app.codes.issue("signin", ADA)
        results = await asyncio.gather(
            *(app.codes.redeem("signin", ADA, code) for _ in range(8)), return_exceptions=True
        )
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, InvalidCode) for r in results if r is not None)


async def test_issued_inside_a_transaction_it_rolls_back_with_it(
    database_url: str, tmp_path: Path
) -> None:
    app = make_app(database_url, tmp_path)
    app.table("notes")
    async with running(app):
        with pytest.raises(RuntimeError, match="mail failed"):
            async with app.tables.transaction():
                code = await app.codes.issue("signin", ADA)
                raise RuntimeError("mail failed")  # e.g. the mail could not be queued
        with pytest.raises(InvalidCode):
            await app.codes.redeem("signin", ADA, code)  # it was never kept
        # and a redeem inside a transaction is refused: its failed try would not count
        async with app.tables.transaction():
            with pytest.raises(RuntimeError, match="outside"):
                await app.codes.redeem("signin", ADA, code)


async def test_the_purge_of_expired_codes_runs_inside_a_transaction_too(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shoestring.codes.PURGE_EVERY", 2)
    app = make_app(database_url, tmp_path)
    app.table("notes")
    async with running(app):
        await app.codes.issue("signin", "gone@example.org", ttl=0.01)
        await asyncio.sleep(0.05)
        async with app.tables.transaction():  # the purge comes due in here: it must not wait on it
            await asyncio.wait_for(app.codes.issue("signin", ADA), 10)
        rows = await app.db.database.fetchall("SELECT key FROM shoestring_codes")
    assert len(rows) == 1  # the expired code was purged, the new one kept
