"""Storage: one async engine per process, PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.schema import ScalarElementColumnDefault
from sqlalchemy.types import TypeEngine


def create_engine(url: str, *, application_name: str | None = None, **kwargs: Any) -> AsyncEngine:
    """`application_name` names the connections in PostgreSQL's `pg_stat_activity`."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_serialised_writes(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    if application_name:
        kwargs.setdefault("connect_args", {}).setdefault("server_settings", {})["application_name"] = application_name
    return create_async_engine(url, **kwargs)


def _sqlite_serialised_writes(engine: AsyncEngine) -> None:
    """WAL, and BEGIN IMMEDIATE so that concurrent transactions queue on the write lock
    instead of failing with SQLITE_BUSY when a reader upgrades to a writer. A connection
    marked `READ_ONLY` (`Database.reading`) begins a plain transaction: in WAL mode it reads
    a snapshot and neither waits for the writer nor holds it up."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


READ_ONLY = "gridcall_read_only"


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
        """A connection for reads only; on SQLite it takes no write lock."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(**{READ_ONLY: True})

    def among(self, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
        """`column IN (values)`; on PostgreSQL `column = ANY(:array)`: one prepared statement
        whatever the number of values, planned in a fraction of the time a list of hundreds of
        parameters takes."""
        if not self.is_postgres:
            return column.in_(values)
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def insert_rows(session: AsyncSession | AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (each with the same columns) in one statement. On PostgreSQL the rows go as
    one array per column, `INSERT ... SELECT FROM unnest(...)`: one statement whatever the
    number of rows, planned once, run by one executor (an executemany runs one per row: about
    twice PostgreSQL's CPU per row, and a third more of ours). Elsewhere, an executemany.
    Column defaults on the Python side are filled in for the columns the rows leave out."""
    if rows:
        statement, params = _insert(session, table, rows)
        await session.execute(statement, params)


async def insert_new(session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]], key: str) -> set[Any]:
    """Insert, in one statement, the rows whose unique key is not in the table yet, and return
    the `key` values of the rows inserted (of a key given twice, the first row goes in). A row
    that another transaction is inserting meanwhile is waited for, and skipped if it was
    committed. Unlike a lookup before the insert, this reads nothing but the unique index,
    whatever the planner believes of the table (a lookup by half a primary key on a young
    table was planned as a scan of every row)."""
    if not rows:
        return set()
    insert, params = _insert(session, table, rows)
    return set(await session.scalars(insert.on_conflict_do_nothing().returning(table.c[key]), params))


def _insert(
    session: AsyncSession | AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[postgresql.Insert | sqlite.Insert, Any]:
    """The insert of `rows` and its parameters: arrays for unnest on PostgreSQL, the rows as
    a list elsewhere; Python-side defaults filled in."""
    defaults = {
        c.name: c.default.arg
        for c in table.columns
        if c.name not in rows[0] and isinstance(c.default, ScalarElementColumnDefault)
    }
    columns = (*rows[0], *defaults)
    dialect = session.get_bind().dialect if isinstance(session, AsyncSession) else session.dialect
    if dialect.name != "postgresql":
        return sqlite.insert(table), [{**defaults, **r} for r in rows] if defaults else list(rows)
    values = {c: [r[c] for r in rows] for c in rows[0]}
    values.update({c: [v] * len(rows) for c, v in defaults.items()})
    return postgresql.insert(table).from_select(list(columns), _unnested(table, columns)), values


@functools.cache
def _unnested(table: Table, columns: tuple[str, ...]) -> Select[Any]:
    """`SELECT u.a, u.b FROM unnest(:a, :b) AS u(a, b)`, once per table and set of columns.
    Text arrays have no length: a cast to `varchar(n)[]` would cut an over-long value
    silently, where the insert itself refuses it, as it refuses a single row."""
    arrays = [bindparam(c, type_=ARRAY(_unbounded(table.c[c].type))) for c in columns]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived(name="u")
    return select(*(rows.c[c] for c in columns))


def _unbounded(kind: TypeEngine[Any]) -> TypeEngine[Any]:
    return Text() if isinstance(kind, String) else kind


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
