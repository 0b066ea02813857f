"""transient() and retry(): what is tried again, and how. The same failures produced by a real
PostgreSQL are in tests/integration/test_transient.py."""

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.lifecycle import Stop
from services.runtime.retry import Backoff, Stopped, retry, transient


class Adapted(Exception):
    """Stands for the asyncpg dialect's AdaptedError: a sqlstate, and asyncpg's error as cause."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(cause: BaseException, sqlstate: str | None = None, invalidated: bool = False) -> DBAPIError:
    """A DBAPIError as SQLAlchemy's asyncpg dialect raises it."""
    adapted = Adapted(str(cause), sqlstate)
    adapted.__cause__ = cause
    return DBAPIError("SELECT 1", {}, adapted, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")),
        wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")),
        wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")),
        wrapped(asyncpg.exceptions.CrashShutdownError("crash shutdown")),
        wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")),
        wrapped(asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout")),
        wrapped(asyncpg.exceptions.SerializationError("could not serialize access")),
        wrapped(asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")),
        wrapped(asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")),
        wrapped(Exception("SSL SYSCALL error"), sqlstate="08006"),
        wrapped(Exception("anything"), invalidated=True),
        # a statement sent while the connection is being closed under it, as seen under pg_terminate_backend
        wrapped(asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")),
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        asyncpg.InterfaceError("cannot call Connection.execute(): connection is closed"),
        ConnectionRefusedError(111, "Connect call failed"),
        KafkaConnectionError("broker unreachable"),
        KafkaTimeoutError(),
        TimeoutError(),
    ],
    ids=lambda e: f"{type(e).__name__}:{str(e)[:40]}",
)
def test_failures_of_the_moment_are_transient(exc):
    assert transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, Adapted("duplicate key", "23505")),
        wrapped(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")),
        wrapped(asyncpg.exceptions.UndefinedTableError("relation does not exist")),
        MessageSizeTooLargeError(),
        ValueError("a bug"),
        KeyError("ufo"),
    ],
    ids=lambda e: f"{type(e).__name__}:{str(e)[:40]}",
)
def test_failures_of_the_work_are_not(exc):
    assert not transient(exc)


async def test_a_locked_sqlite_database_is_transient(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    holder, waiter = create_async_engine(url), create_async_engine(url, connect_args={"timeout": 0.05})
    try:
        async with holder.connect() as c:
            await c.execute(text("CREATE TABLE t (x INTEGER)"))
            await c.commit()
            await c.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(Exception) as raised:
                async with waiter.begin() as w:
                    await w.execute(text("INSERT INTO t VALUES (1)"))
        assert "database is locked" in str(raised.value)
        assert transient(raised.value)
    finally:
        await holder.dispose()
        await waiter.dispose()


async def test_retry_repeats_transient_failures_until_the_work_is_done():
    failures = [ConnectionResetError(), TimeoutError()]

    async def work() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await retry(work, what="test", backoff=Backoff(0.001, 0.002)) == "done"


async def test_retry_raises_what_it_must_not_repeat_at_once():
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await retry(work, what="test")
    assert calls == 1


async def test_retry_gives_up_when_asked_to_stop():
    stop = Stop()

    async def work() -> None:
        stop.set()
        raise ConnectionResetError()

    with pytest.raises(Stopped):
        await asyncio.wait_for(retry(work, what="test", stop=stop), 1)
