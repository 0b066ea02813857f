"""The SQLite connection of embedded mode (services/storage/sqlite.py): one call to the connection's
thread per statement, BEGIN in the call of the first one, no rollback call after a commit, and
otherwise what SQLAlchemy's own aiosqlite adapter gives: rows, row counts, errors, rollbacks,
writers that queue on the write lock."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from services.runtime.retry import transient
from services.storage import sqlite
from services.storage.db import Database

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every call made on a connection's thread, by what it ran."""
    counted: Counter[str] = Counter()
    original = sqlite.Connection._execute

    async def counting(self: sqlite.Connection, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        counted[getattr(fn, "__name__", "other")] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite.Connection, "_execute", counting)
    return counted


async def test_a_transaction_makes_one_call_per_statement_and_none_to_reset_after_commit(db, calls):
    async with db.transaction() as s:
        await s.execute(insert(things), [{"name": "a"}, {"name": "b"}])
        found = (await s.execute(select(things.c.name).order_by(things.c.name))).scalars().all()
        await s.execute(things.update().where(things.c.name == "a").values(name="c"))
    assert found == ["a", "b"]
    # BEGIN IMMEDIATE with the insert, the select, the update, the commit; the pool's reset rolls back nothing.
    assert calls == {"_run": 3, "commit": 1}


async def test_a_transaction_without_statements_makes_no_call(db, calls):
    async with db.transaction():
        pass
    assert calls == {}


async def test_rows_row_counts_and_inserted_ids_are_the_statements_own(db):
    async with db.transaction() as s:
        first = await s.execute(insert(things).values(name="a"))
        await s.execute(insert(things), [{"name": f"n{i}"} for i in range(5)])
        changed = await s.execute(things.update().where(things.c.name.like("n%")).values(name=things.c.name + "!"))
        returned = await s.execute(things.delete().where(things.c.name == "n0!").returning(things.c.name))
        assert first.inserted_primary_key == (1,)
        assert changed.rowcount == 5
        assert returned.scalars().all() == ["n0!"]
    async with db.reading() as conn:
        rows = await conn.execute(select(things.c.name).order_by(things.c.id))
        assert rows.fetchone() == ("a",)
        assert rows.fetchmany(2) == [("n1!",), ("n2!",)]
        assert rows.scalars().all() == ["n3!", "n4!"]


async def test_a_failed_statement_rolls_its_transaction_back(db, calls):
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(insert(things).values(name="a"))
            await s.execute(insert(things).values(name="a"))
    assert calls["rollback"] == 1
    async with db.transaction() as s:
        assert (await s.execute(select(things.c.name))).all() == []
        await s.execute(insert(things).values(name="a"))  # the connection is usable again
    async with db.reading() as conn:
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["a"]


async def test_a_reader_makes_one_call_per_statement_and_holds_no_transaction(db, calls):
    async with db.reading() as conn:
        await conn.execute(select(things))
        assert calls == {"_run": 1}
        async with db.transaction() as s:  # no lock of the reader's stands in the writer's way
            await s.execute(insert(things).values(name="a"))
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["a"]
    assert "rollback" not in calls


async def test_writers_queue_on_the_write_lock_and_a_lock_held_too_long_is_transient(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    holder, waiter = Database(url), Database(url)

    @event.listens_for(waiter.engine.sync_engine, "connect")
    def impatient(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.cursor().execute("PRAGMA busy_timeout=50")

    try:
        async with holder.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with holder.transaction() as s:
            await s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held
            with pytest.raises(OperationalError) as raised:
                async with waiter.transaction() as w:
                    await w.execute(insert(things).values(name="b"))
            assert "database is locked" in str(raised.value)
            assert transient(raised.value)
            queued = asyncio.create_task(_insert(holder, "queued"))  # a writer with patience waits its turn
            await asyncio.sleep(0)
            await s.execute(insert(things).values(name="first"))
        await queued
        async with holder.reading() as conn:
            assert (await conn.execute(select(things.c.name).order_by(things.c.id))).scalars().all() == [
                "first",
                "queued",
            ]
    finally:
        await holder.dispose()
        await waiter.dispose()


async def _insert(db: Database, name: str) -> None:
    async with db.transaction() as s:
        await s.execute(insert(things).values(name=name))
