"""Many rows in one statement (services/storage/bulk.py), on real PostgreSQL and on SQLite: every
column type the services use comes back as written, rows are matched by their key, and text
longer than its column is refused, not cut to fit by the arrays' casts."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.exc import DBAPIError

from services.storage.bulk import among, insert_rows, update_rows
from services.storage.db import Database, UtcDateTime
from tests.support.statements import statements

pytestmark = pytest.mark.integration

metadata = MetaData()
things = Table(
    f"bulk_{uuid.uuid4().hex[:8]}",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("note", Text),
    Column("details", JSON, nullable=False),
    Column("at", UtcDateTime()),
)
AT = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


@asynccontextmanager
async def with_table(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await database.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (
        request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path}/b.db"
    )


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    async with with_table(url) as database:
        yield database


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[Database]:
    async with with_table(pg_url) as database:
        yield database


def row(i: int) -> dict:
    return {
        "id": f"t{i}",
        "n": i,
        "flag": i % 2 == 0,
        "note": None if i % 3 == 0 else f"note {i} 中文",
        "details": {"i": i, "tags": ["a", "b"], "nested": {"ok": True}},
        "at": None if i % 4 == 0 else AT + timedelta(seconds=i),
    }


async def stored(db: Database) -> dict[str, dict]:
    async with db.sessions() as s:
        return {r.id: r._asdict() for r in await s.execute(select(things))}


async def test_inserted_and_updated_rows_come_back_as_written_each_in_one_statement(db: Database):
    rows = [row(i) for i in range(100)]
    with statements(db.engine) as inserting:
        async with db.transaction() as s:
            await insert_rows(s, things, rows)
    assert await stored(db) == {r["id"]: r for r in rows}

    changed = [{"id": r["id"], "n": -r["n"], "note": "changed", "at": AT} for r in rows[::2]]
    with statements(db.engine) as updating:
        async with db.transaction() as s:
            await update_rows(s, things, "id", changed)
    expected = {r["id"]: r for r in rows} | {
        c["id"]: {**next(r for r in rows if r["id"] == c["id"]), **c} for c in changed
    }
    assert await stored(db) == expected
    assert len([q for q in inserting if "INSERT" in q]) == 1
    assert len([q for q in updating if "UPDATE" in q]) == 1

    async with db.sessions() as s:
        found = (await s.scalars(select(things.c.id).where(among(s, things.c.id, ["t1", "t7", "nope"])))).all()
    assert sorted(found) == ["t1", "t7"]


async def test_nothing_to_write_sends_nothing(db: Database):
    with statements(db.engine) as sent:
        async with db.transaction() as s:
            await insert_rows(s, things, [])
            await update_rows(s, things, "id", [])
    assert [q for q in sent if "INSERT" in q or "UPDATE" in q] == []


async def test_text_longer_than_its_column_is_refused_not_cut(pg: Database):
    """PostgreSQL only: SQLite keeps no length."""
    db = pg
    with pytest.raises(DBAPIError):
        async with db.transaction() as s:
            await insert_rows(s, things, [row(1) | {"id": "x" * 17}])
    async with db.transaction() as s:
        await insert_rows(s, things, [row(1)])
    with pytest.raises(DBAPIError):
        async with db.transaction() as s:
            await update_rows(s, things, "n", [{"n": 1, "id": "y" * 17}])
    assert list(await stored(db)) == ["t1"]

    async with db.transaction() as s:
        await insert_rows(s, things, [row(2) | {"id": "z" * 16}])
    async with db.sessions() as s:
        assert (await s.scalars(select(things.c.id).where(among(s, things.c.id, ["z" * 17])))).all() == []
