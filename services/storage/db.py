"""Storage: one async engine per process, PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, TypeDecorator, event, literal
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.storage import sqlite

# A connection whose server has gone silent (a network partition, a half-open connection after a
# failover) is noticed only by the client's own clock: without these, a relay, a consumer or a
# worker waiting on one waited until the process stopped (tests/faults, the database black-holed
# and half-open through tests/support/faultproxy.py). The migrations, whose statements may take
# longer, pass command_timeout=None.
CONNECT_TIMEOUT = 10.0  # seconds to connect (asyncpg's default: 60)
COMMAND_TIMEOUT = 30.0  # seconds a statement may take
# The server's side of the same silence: a connection the client gave up on stays open on the
# server (no FIN crossed the partition; keepalive would notice after two hours), and a session
# cut off inside a transaction keeps its locks all that while. A relay cut off between its
# claim and its commit held the outbox's advisory lock, and no relay of that service published
# again (CI, the database black-holed: 2,830 rows stuck in dispatcher_outbox). The server ends a
# session idle in a transaction this long: longer than any wait of ours inside one (a relay
# waits on the broker's acknowledgement, at most aiokafka's request timeout of 40 s).
IDLE_IN_TRANSACTION = 60.0  # seconds


def create_engine(
    url: str,
    *,
    application_name: str | None = None,
    command_timeout: float | None = COMMAND_TIMEOUT,
    idle_in_transaction: float = IDLE_IN_TRANSACTION,
    **kwargs: Any,
) -> AsyncEngine:
    """`application_name` names the connections in PostgreSQL's `pg_stat_activity`. A failed
    statement's error never shows its parameters: they may be a resident's contact, and errors
    end up in log lines and dead letters.

    On PostgreSQL every statement is planned for its values and the tables as they are now
    (`plan_cache_mode`). asyncpg prepares each statement once per connection, and PostgreSQL
    would otherwise settle on a generic plan after five runs: one made while a table was empty
    keeps scanning it whole as it grows, until an autovacuum analyses it. In a burst on a fresh
    database the consumers' batch loads (`case_id = ANY($1)`) and the delivery workers' claim
    took 10–30 ms each for this; a custom plan costs a fraction of a millisecond.

    PostgreSQL's JIT compiler is off: it compiles any statement the planner costs high, which
    the ops figures' aggregates are, and the compiling took 500–700 ms of a figures request
    whose statements run in 30–250 ms (dispatcher/figures.py, the figures test's history).

    A connection and a statement wait at most CONNECT_TIMEOUT and COMMAND_TIMEOUT, and the server
    ends a session left idle in a transaction after IDLE_IN_TRANSACTION (above)."""
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):

        def connect() -> sqlite.Connection:
            args, options = engine.dialect.create_connect_args(engine.url)
            options.setdefault("timeout", sqlite.BUSY_TIMEOUT)
            return sqlite.connect(*args, **options)

        engine = create_async_engine(url, async_creator=connect, **kwargs)
        _sqlite_serialised_writes(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    connection = kwargs.setdefault("connect_args", {})
    connection.setdefault("timeout", CONNECT_TIMEOUT)
    connection.setdefault("command_timeout", command_timeout)
    server = connection.setdefault("server_settings", {})
    server.setdefault("plan_cache_mode", "force_custom_plan")
    server.setdefault("jit", "off")
    server.setdefault("idle_in_transaction_session_timeout", str(int(idle_in_transaction * 1000)))
    if application_name:
        server["application_name"] = application_name
    engine = create_async_engine(url, **kwargs)
    _timed_out_is_a_disconnect(engine)
    return engine


def _timed_out_is_a_disconnect(engine: AsyncEngine) -> None:
    """A statement that timed out (COMMAND_TIMEOUT) leaves its connection waiting for the server
    to confirm the cancel, which a server gone silent never does: returned to the pool, the
    next rollback on it waited for good (tests/faults, the database black-holed, in CI). It is
    dropped instead, without a goodbye, and the pool's others kept."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _drop(context: ExceptionContext) -> None:
        if isinstance(context.original_exception, TimeoutError):
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = False


def _sqlite_serialised_writes(engine: AsyncEngine) -> None:
    """WAL, and BEGIN IMMEDIATE so that concurrent transactions queue on the write lock
    instead of failing with SQLITE_BUSY when a reader upgrades to a writer (begun with the
    transaction's first statement: services/storage/sqlite.py). A connection marked `READ_ONLY`
    (`Database.reading`) begins no transaction: in WAL mode each of its statements reads a
    committed snapshot of its own and neither waits for the writer nor holds it up."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The wait (`sqlite.BUSY_TIMEOUT`) is set as the file opens, before this: switching to
        # WAL takes a lock, and a process opening the file while another writes (the CLI beside
        # `gridcall run`, a test enrolling staff) must queue. The migrations make the file on
        # this same engine, so it is in WAL mode from its first statement on and the switch
        # here is a no-op: no connection ever races another into WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            conn.connection.driver_connection.begin("BEGIN IMMEDIATE")


READ_ONLY = "gridcall_read_only"


def fixed(value: str) -> ColumnElement[str]:
    """A constant written into the statement's text, not sent as a parameter: a partial index
    whose condition names it (`dispatcher.tables.only`) can then serve any plan of the statement,
    the generic ones PostgreSQL settles on for a prepared statement included."""
    return literal(value, literal_execute=True)


class Database:
    def __init__(self, url: str, *, application_name: str | None = None, **kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, application_name=application_name, **kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends, rolls back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only. On SQLite it takes no write lock, and each statement
        reads a snapshot of its own (the local bus reads one topic per statement)."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(**{READ_ONLY: True})

    async def dispose(self) -> None:
        await self.engine.dispose()


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: gridcall stores aware UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
