"""What is worth trying again, and the one loop that tries again.

Every background loop and every request goes through `transient()` to decide whether a
failure says something about the work (a bad payload, a bug: do not repeat it) or only about
the moment (a dropped connection, a deadlock, a server restarting: do it again), and through
`retry()` to wait between attempts.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.district.text import printable
from services.runtime.lifecycle import Stop

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL's "try again" states: deadlock, serialization failure, lock and statement timeouts,
# an administrator's or a crash's shutdown, a server not accepting connections yet, too many clients.
RETRY_STATES = {"40P01", "40001", "55P03", "57014", "57P01", "57P02", "57P03", "53300"}
# Connection exceptions (SQLSTATE class 08): the connection, not the statement, failed.
CONNECTION_CLASS = "08"
TRANSIENT_TYPES = (
    OperationalError,  # SQLAlchemy's: SQLite's "database is locked", a server gone away
    InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
    KafkaTimeoutError,
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.PostgresConnectionError,  # "connection was closed in the middle of operation"
    asyncpg.InternalClientError,  # a statement sent on a connection the server is closing
)


def transient(exc: BaseException) -> bool:
    """A failure that says nothing about the work itself: doing it again later can succeed.

    SQLAlchemy wraps the driver's exception (`exc.orig`), and the asyncpg dialect wraps
    asyncpg's own exception once more (its `__cause__`), so the whole chain is looked at: a
    dropped connection arrives as a plain `DBAPIError` whose cause has SQLSTATE 08003, or
    as asyncpg's "cannot switch to state" when the statement raced the closing connection."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return any(_transient_alone(e) for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "orig", None), e.__cause__]
    return seen


def _transient_alone(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_TYPES) or getattr(exc, "retriable", False) is True:
        return True  # aiokafka marks the broker's "try again" errors `retriable`
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return isinstance(state, str) and (state in RETRY_STATES or state.startswith(CONNECTION_CLASS))


def always(exc: BaseException) -> bool:
    """For loops that must never give up (an outbox row cannot be skipped, a supervisor
    never lets its loop die): every failure is retried."""
    return True


class Stopped(Exception):
    """Asked to stop while waiting to try again: the work was not done."""


@dataclass(frozen=True)
class Backoff:
    first: float = 0.05
    most: float = 5.0


async def retry(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: Stop | None = None,
    retry_on: Callable[[BaseException], bool] = transient,
    backoff: Backoff = Backoff(),
) -> T:
    """Await `work()` until it returns. A failure `retry_on` accepts is logged and tried again
    after a pause that doubles up to `backoff.most` (a transient one as a warning line, anything
    else with its traceback); any other failure is raised. Raises `Stopped` instead of waiting
    once `stop` is set."""
    pause = backoff.first
    while True:
        try:
            return await work()
        except (Stopped, asyncio.CancelledError):
            raise
        except Exception as exc:
            if not retry_on(exc):
                raise
            log.warning("%s: %s; retrying in %.2fs", what, describe(exc), pause, exc_info=not transient(exc))
        if stop:
            raise Stopped(what)
        if stop is None:
            await asyncio.sleep(pause)
        else:
            await stop.sleep(pause)
        pause = min(pause * 2, backoff.most)


def describe(exc: BaseException) -> str:
    """One line for a log or an error column: the type and the first line of the message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return printable(f"{type(exc).__name__}: {first}", 500)  # a message may quote user text
