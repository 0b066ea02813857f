"""SQLite under asyncio with as few hops to a thread as waiting requires.

aiosqlite runs each connection on a thread of its own, and every call on it is a hop: a queue
put that wakes the thread, then a wake-up of the event loop with the result. SQLAlchemy's
asyncio adapter makes four such calls per statement (cursor, execute, fetchall, close) and one
more to roll back, on its way back to the pool, a connection that has just committed; in the
embedded process under load the hops cost about a fifth of the event loop's CPU (the futex wake
of `SimpleQueue.put` alone was 16%), and each took 0.2-0.7 ms of wall time while the
transaction held SQLite's one write lock.

Only two things on a connection can wait: BEGIN IMMEDIATE, for the write lock, and COMMIT, for
the fsync. `connect` returns an aiosqlite connection, for SQLAlchemy's `async_creator`, that
runs those on its thread and nothing else there it need not:
- a write transaction (`begin_immediate`) begins in the call of its first statement;
- the statements after it run on the event loop: the transaction holds the write lock, and in
  WAL mode a statement then waits for nobody (they are short: the batches of gridcall's
  writers, a few ms at most);
- a statement outside a write transaction (the local bus's reads) runs, fetches its rows and
  closes its cursor in one call on the thread;
- the pool's rollback is skipped when the last call left no transaction open.
The connection is used by one task at a time, as before (SQLAlchemy's adapter holds a lock per
connection), so the thread and the loop never use it at once. Embedded mode under wrk made ~14
calls per report with SQLAlchemy's adapter, ~2 with this one.
"""

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite

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
        if conn.writing:  # the write lock is held: nothing to wait for
            results = _run(conn._conn, None, statement)
        else:
            begin, conn.beginning = conn.beginning, None
            conn.in_transaction = True  # until the call says otherwise: a failed statement leaves it unknown
            results = await conn._execute(_run, conn._conn, begin, statement)
            conn.writing = begin is not None
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
    """The statement (after its transaction's BEGIN if it is the first), its rows and what the
    cursor says about it: on the connection's thread, or on the loop once the lock is held."""
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
    # The BEGIN of a write transaction whose first statement is still to come.
    beginning: str | None = None
    # Whether a write transaction holds the lock: its statements run on the event loop.
    writing = False

    def cursor(self) -> Cursor:  # type: ignore[override]  # no call to the thread: see Cursor
        return Cursor(self)

    def begin_immediate(self) -> None:
        """Begin a write transaction just before the next statement, in its call to the thread
        (a failure to begin, such as a lock held too long, is that statement's error)."""
        self.beginning = "BEGIN IMMEDIATE"

    async def commit(self) -> None:
        if self.beginning:  # a transaction without a statement: nothing began, nothing to commit
            self.beginning = None
            return
        self.writing = False
        await super().commit()
        self.in_transaction = False

    async def rollback(self) -> None:
        """Nothing to roll back after a commit: the pool's reset costs no call then."""
        self.beginning = None
        self.writing = False
        if self.in_transaction:
            await super().rollback()
            self.in_transaction = False


def connect(database: str, **kwargs: Any) -> Connection:
    """A connection to the SQLite file `database`; `kwargs` go to `sqlite3.connect`."""
    connection = Connection(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's own adapter does: an unclosed connection never holds up exit
    return connection
