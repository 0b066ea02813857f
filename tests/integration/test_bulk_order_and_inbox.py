"""services/storage/bulk.py on PostgreSQL and SQLite: insert_rows keeps the rows' order (an outbox's ids
follow the order its events were emitted in), and insert_new, the inbox's one statement, skips
the keys already there, including those another transaction is inserting."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, LargeBinary, MetaData, String, Table, select, text

from services.storage.bulk import insert_new, insert_rows
from services.storage.db import Database, UtcDateTime
from tests.support.statements import statements
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return (
        f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )


async def scratch_table(url: str, name: str, *columns: Column) -> AsyncIterator[tuple[Database, Table]]:
    """A table of the test's own, created before and dropped after."""
    db = Database(url)
    table = Table(f"{name}_{uuid.uuid4().hex[:8]}", MetaData(), *columns)
    async with db.engine.begin() as conn:
        await conn.run_sync(table.create)
    yield db, table
    async with db.engine.begin() as conn:
        await conn.run_sync(table.drop)
    await db.dispose()


@pytest.fixture
async def db_and_table(url):
    async for made in scratch_table(
        url,
        "rows",
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("key", String(8), nullable=False),
        Column("details", JSON),
        Column("payload", LargeBinary),
        Column("at", UtcDateTime()),
        Column("flag", Boolean),
    ):
        yield made


async def test_rows_go_in_one_statement_in_their_order_with_their_values(db_and_table):
    db, table = db_and_table
    rows = [
        {"key": f"k{i}", "details": {"n": i, "text": "网格"}, "payload": b"\x00\xff", "at": NOW, "flag": i % 2 == 0}
        for i in range(500)
    ]
    rows[7] = {"key": "nulls", "details": None, "payload": None, "at": None, "flag": None}
    async with db.transaction() as s:
        await s.connection()  # the transaction has begun
        with statements(db.engine) as sent:
            await insert_rows(s, table, rows)
    assert len(sent) == 1
    async with db.sessions() as s:
        stored = (await s.execute(select(table).order_by(table.c.id))).all()
    assert [r.key for r in stored] == [r["key"] for r in rows]  # ids follow the rows' order (an outbox relies on it)
    assert stored[3]._mapping == {"id": stored[3].id, **rows[3]}
    assert stored[7]._mapping == {"id": stored[7].id, **rows[7]}


@pytest.fixture
async def inbox(url):
    async for made in scratch_table(
        url,
        "inbox",
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
    ):
        yield made


async def test_insert_new_skips_the_keys_already_there_and_says_which_went_in(inbox):
    db, table = inbox
    async with db.transaction() as s:
        assert await insert_new(s, table, [{"consumer": "c", "event_id": "e1"}], key="event_id") == {"e1"}
    rows = [{"consumer": "c", "event_id": e} for e in ("e1", "e2", "e3", "e2")]  # e1 handled, e2 twice
    async with db.transaction() as s:
        assert await insert_new(s, table, rows, key="event_id") == {"e2", "e3"}
        assert await insert_new(s, table, [{"consumer": "other", "event_id": "e1"}], key="event_id") == {"e1"}
    async with db.sessions() as s:
        assert len((await s.execute(select(table))).all()) == 4


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)  # SQLite has one writer at a time
async def test_insert_new_waits_for_a_concurrent_insert_of_the_same_key_then_skips_it(inbox):
    db, table = inbox
    first = [{"consumer": "c", "event_id": "e1"}]
    async with db.transaction() as s1:
        assert await insert_new(s1, table, first, key="event_id") == {"e1"}
        async with db.transaction() as s2:
            s2_pid = await s2.scalar(text("SELECT pg_backend_pid()"))
            second = asyncio.create_task(
                insert_new(s2, table, [*first, {"consumer": "c", "event_id": "e2"}], "event_id")
            )

            async def waiting_on_a_lock() -> bool:
                async with db.sessions() as s3:
                    query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"
                    return await s3.scalar(text(query), {"pid": s2_pid}) == "Lock"

            await eventually(waiting_on_a_lock)
            assert not second.done()
            await s1.commit()
            assert await second == {"e2"}
