"""SQLite under asyncio in one thread hop per statement.

aiosqlite runs each connection on a thread of its own, and every call on it is a hop: a queue
put that wakes the thread, then a wake-up of the event loop with the result. SQLAlchemy's
asyncio adapter makes four such calls per statement (cursor, execute, fetchall, close) and one
more to roll back, on its way back to the pool, a connection that has just committed; in the
embedded process under load the hops cost about a fifth of the event loop's CPU (the futex wake
of `SimpleQueue.put` alone was 16%).

`connect` returns an aiosqlite connection, for SQLAlchemy's `async_creator`, whose cursors run
a statement, fetch its rows and close the sqlite3 cursor in one call on the connection's thread;
which begins a transaction (`begin`) in the call of its first statement rather than in a call of
its own; and which skips the rollback when the last call left no transaction open. Everything
still runs on aiosqlite's thread, one call at a time, as before: only the number of calls
changes. Embedded mode under wrk made ~14 calls per report with SQLAlchemy's adapter, ~4 with
this one.
"""

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite

from services.storage import clocksql

# How long a statement waits for another connection's write lock before "database is locked":
# set on every connection as it opens (sqlite3's `timeout`), so a lock is a wait, not an error.
BUSY_TIMEOUT = 30.0

Row = tuple[Any, ...]
Description = tuple[tuple[Any, ...], ...] | None


class Cursor:
    """The part of an aiosqlite cursor that SQLAlchemy's adapter uses, with each statement's
    results read in the call that runs it and kept here."""

    arraysize = 1

    def __init__(self, connection: "Connection") -> None:
        self._connection = connection
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Row] = []

    async def __aenter__(self) -> "Cursor":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> "Cursor":
        await self._run(lambda cursor: cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> "Cursor":
        await self._run(lambda cursor: cursor.executemany(sql, parameters))
        return self

    async def _run(self, statement: Callable[[sqlite3.Cursor], object]) -> None:
        conn = self._connection
        begin, conn.beginning = conn.beginning, None
        conn.in_transaction = True  # until the call says otherwise: a failed statement leaves it unknown
        results = await conn._execute(_run, conn._conn, begin, statement)
        self.description, self.rowcount, self.lastrowid, self._rows, conn.in_transaction = results

    async def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


def _run(
    conn: sqlite3.Connection, begin: str | None, statement: Callable[[sqlite3.Cursor], object]
) -> tuple[Description, int, int | None, list[Row], bool]:
    """On the connection's thread: the transaction's BEGIN if it is the first statement, the
    statement, its rows and what the cursor says about it."""
    cursor = conn.cursor()
    try:
        if begin:
            cursor.execute(begin)
        statement(cursor)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows, conn.in_transaction
    finally:
        cursor.close()


class Connection(aiosqlite.Connection):
    # Whether a transaction may be open: true unless the last call on the connection said not.
    in_transaction = True
    # The BEGIN statement of a transaction whose first statement is still to come.
    beginning: str | None = None

    def cursor(self) -> Cursor:  # type: ignore[override]  # no call to the thread: see Cursor
        return Cursor(self)

    def begin(self, statement: str = "BEGIN") -> None:
        """Begin a transaction with `statement`, run just before the next statement (a failure
        to begin, such as a lock held too long, is that statement's error)."""
        self.beginning = statement

    async def commit(self) -> None:
        if self.beginning:  # a transaction without a statement: nothing began, nothing to commit
            self.beginning = None
            return
        await super().commit()
        self.in_transaction = False

    async def rollback(self) -> None:
        """Nothing to roll back after a commit: the pool's reset costs no call then."""
        self.beginning = None
        if self.in_transaction:
            await super().rollback()
            self.in_transaction = False


def _open(database: str, **kwargs: Any) -> sqlite3.Connection:
    """On the connection's thread: the file opened, with the SQL functions PostgreSQL has and
    SQLite lacks (services/storage/clocksql.py)."""
    connection = sqlite3.connect(database, **kwargs)
    clocksql.install(connection)
    return connection


def connect(database: str, **kwargs: Any) -> Connection:
    """A connection to the SQLite file `database`; `kwargs` go to `sqlite3.connect`."""
    connection = Connection(partial(_open, database, **kwargs), iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's own adapter does: an unclosed connection never holds up exit
    return connection
