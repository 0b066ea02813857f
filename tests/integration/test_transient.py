"""transient() on the failures a real PostgreSQL produces, exactly as SQLAlchemy's asyncpg
dialect raises them: a terminated backend, a deadlock, a lock timeout, a refused connection;
and on the failures that say something about the work, which must not be retried."""

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.retry import transient
from services.storage.db import create_engine
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(pg_url):
    e = create_engine(pg_url, pool_pre_ping=False)
    yield e
    await e.dispose()


@pytest.fixture
async def admin(pg_url):
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    yield conn
    await conn.close()


@pytest.fixture
async def table(admin):
    name = f"t_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY); INSERT INTO {name} VALUES (1), (2)")
    yield name
    await admin.execute(f"DROP TABLE {name}")


async def raised(work) -> BaseException:
    try:
        await work
    except Exception as exc:
        return exc
    raise AssertionError("it did not fail")


async def test_a_backend_terminated_in_the_middle_of_a_statement(engine, admin):
    async with engine.connect() as c:
        pid = await c.scalar(text("SELECT pg_backend_pid()"))

        async def terminate() -> None:
            await asyncio.sleep(0.3)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)

        killer = asyncio.create_task(terminate())
        exc = await raised(c.execute(text("SELECT pg_sleep(5)")))
        await killer
    assert "connection was closed in the middle of operation" in str(exc)  # the failure that lost a case
    assert transient(exc)


async def test_a_backend_terminated_while_idle_then_used(engine, admin):
    async with engine.connect() as c:
        pid = await c.scalar(text("SELECT pg_backend_pid()"))
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.2)
        exc = await raised(c.execute(text("SELECT 1")))
    assert transient(exc)


async def test_a_deadlock(engine, table):
    failures: list[BaseException] = []
    both_hold_one = asyncio.Barrier(2)

    async def lock(first: int, then: int) -> None:
        async with engine.connect() as c, c.begin():
            await c.execute(text(f"SELECT id FROM {table} WHERE id = {first} FOR UPDATE"))
            await both_hold_one.wait()
            try:
                await c.execute(text(f"SELECT id FROM {table} WHERE id = {then} FOR UPDATE"))
            except Exception as exc:
                failures.append(exc)

    await asyncio.gather(lock(1, 2), lock(2, 1))
    [exc] = failures
    assert "deadlock detected" in str(exc)
    assert transient(exc)


async def test_a_lock_timeout(engine, table):
    async with engine.connect() as holder, holder.begin():
        await holder.execute(text(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE"))
        async with engine.connect() as waiter, waiter.begin():
            await waiter.execute(text("SET LOCAL lock_timeout = '50ms'"))
            exc = await raised(waiter.execute(text(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE")))
    assert "lock timeout" in str(exc)
    assert transient(exc)


async def test_a_server_that_does_not_answer(pg_url):
    nobody = create_engine(pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{free_port()}"))
    try:
        exc = await raised(nobody.connect().__aenter__())
    finally:
        await nobody.dispose()
    assert transient(exc)


async def test_failures_of_the_work_itself_are_not_transient(engine: AsyncEngine, table):
    async with engine.connect() as c:
        duplicate = await raised(c.execute(text(f"INSERT INTO {table} VALUES (1)")))
        await c.rollback()
        nul = await raised(c.execute(text("SELECT :v"), {"v": "a\x00b"}))
        await c.rollback()
        typo = await raised(c.execute(text("SELEKT 1")))
    assert not transient(duplicate)
    assert not transient(nul)
    assert not transient(typo)
