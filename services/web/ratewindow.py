"""The rate limit's window shared by a service's replicas: a sliding window counter in the
service's own database (GRIDCALL_RATE_LIMIT_STORE=database, the default on PostgreSQL).

Counting. Time is cut into fixed windows as long as the rule's period, aligned on the epoch,
and each client has a counter per window: a row (client, window_start, hits). The client's
hits in the last period are estimated as the current window's count plus the previous
window's, weighted by the share of it the last period still covers: as if the previous
window's hits had come evenly (Cloudflare's sliding window counter,
https://blog.cloudflare.com/counting-things-a-lot-of-different-things/). A request fits when
that estimate, itself included, is at most the limit. A client costs two rows whatever its
limit, where an exact moving window would keep one per hit.

One statement per hit, in autocommit: a CTE reads the previous window's count, and
`INSERT ... ON CONFLICT (client, window_start) DO UPDATE SET hits = hits + 1 ... RETURNING hits`
counts the hit in the current window only if it fits. A refused request counts nothing, as in
`MovingWindow`: a client that keeps knocking still gets its limit. The condition is checked on
the row as the upsert has locked it, so replicas counting one client at the same moment never
let more through than the limit. No BEGIN and COMMIT around it: one round trip, after the pool's
pre-ping that every checkout in gridcall pays.

The table is UNLOGGED on PostgreSQL (its migration makes it so). Counters need no crash
safety: a crash of the database, or a failover to a standby, starts them all afresh, which
lets each client have its limit once more, once. In exchange a hit writes no WAL, so its
commit waits for no fsync (a third of a logged upsert's time, measured here) and the counters
add nothing to replication. `hits` has no index, so the upsert's updates can be HOT.
PostgreSQL only: on SQLite gridcall is one process (embedded mode), whose memory holds the
limit exactly, and the settings refuse this store there.

Time is the injected clock's, as everywhere in gridcall, so the replicas' clocks (NTP) place
the window boundaries: a replica whose clock is a second off counts in windows a second off.

Old windows: each process deletes the windows before the previous one once per period, in
the first request of a new window; that is one period's clients at most.

When the database does not answer, a hit fails open: the request goes on uncounted, since a
resident's report must not fail because of its rate limit. A warning says so at most once a
minute, with how many requests went uncounted; it never names a client. So does one that takes
longer than PATIENCE (a stalled database, a pool whose connections are all taken)."""

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Column, Float, Integer, MetaData, Select, String, Table, bindparam, delete, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError

from services.district.clock import Clock
from services.runtime.retry import describe
from services.storage.db import Database, UtcDateTime

log = logging.getLogger(__name__)

# What a database that does not answer raises: SQLAlchemy's errors, the driver's own while
# connecting, a refused or dropped connection.
UNANSWERED = (SQLAlchemyError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
WARN_EVERY = timedelta(minutes=1)
PATIENCE = 0.25  # seconds a hit may take; a stalled database or a full pool lets the request on uncounted
CLIENT_CHARS = 100  # the column's length: a longer client is counted by its hash


def rate_window_table(metadata: MetaData, prefix: str) -> Table:
    """A service's rate-limit counters: a row per client and window. Its migration creates it
    UNLOGGED on PostgreSQL (the module's docstring says why)."""
    return Table(
        f"{prefix}_rate_windows",
        metadata,
        Column(
            "client",
            String(CLIENT_CHARS),
            primary_key=True,
            doc="ip:<address>, key:<SHA-256 of an issued API key>, or sha256:<of a longer one>",
        ),
        Column("window_start", UtcDateTime(), primary_key=True),
        Column("hits", Integer, nullable=False, doc="the hits counted in the window: refused ones are not"),
    )


def previous_weight(elapsed: float, seconds: float) -> float:
    """The share of the previous window the last `seconds` cover, `elapsed` into the current one."""
    return (seconds - elapsed) / seconds


def fits(previous: int, current: int, limit: int, weight: float) -> bool:
    """Whether one more hit keeps the estimate within `limit`: the statement's own condition,
    in the same order of operations."""
    return previous * weight + current + 1 <= limit


def wait(previous: int, current: int, limit: int, seconds: float, elapsed: float) -> float:
    """The seconds, from `elapsed` into the current window, until one more hit fits if no
    other is counted meanwhile: 0 if it fits now, else more than 0."""
    if fits(previous, current, limit, previous_weight(elapsed, seconds)):
        return 0.0
    room = limit - 1 - current
    if room >= 0:
        # Later in this window, once the previous window's share has fallen to `room`.
        until = seconds * (previous - room) / previous - elapsed
    else:
        # This window alone is full: in the next one it is the previous window, whose share
        # must fall to limit - 1.
        until = seconds - elapsed + seconds * (current - (limit - 1)) / current
    return max(until, 1e-6)


class DatabaseWindow:
    """A `Window` (services/web/ratelimit.py) in `table`, shared by every process on `db`."""

    def __init__(self, table: Table, db: Database, clock: Clock, limit: int, seconds: float) -> None:
        self.table = table
        self.db = db
        self.clock = clock
        self.limit = limit
        self.seconds = seconds
        self.statement = hit_statement(table)
        self.pruned: datetime | None = None  # the window this process last pruned before
        self.warned: datetime | None = None
        self.uncounted = 0

    async def hit(self, client: str) -> float:
        now = self.clock.now()
        into = now.timestamp()
        start = into // self.seconds * self.seconds
        elapsed = into - start
        current = datetime.fromtimestamp(start, UTC)
        previous = current - timedelta(seconds=self.seconds)
        weight = previous_weight(elapsed, self.seconds)
        if len(client) > CLIENT_CHARS:  # an address a trusted proxy passed on as it came: any length
            client = "sha256:" + hashlib.sha256(client.encode()).hexdigest()
        values = {"client": client, "current": current, "previous": previous, "weight": weight, "limit": self.limit}
        try:
            async with asyncio.timeout(PATIENCE), self.db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (await autocommit.execute(self.statement, values)).one()
        except UNANSWERED as exc:
            self._uncounted(now, exc)
            return 0.0
        if self.pruned != current:
            self.pruned = current  # before the wait: the requests meanwhile do not prune as well
            await self._prune(before=previous)
        if row.counted is not None:
            return 0.0
        # `current` was read in the statement's snapshot, which may predate hits of other requests
        # that the upsert saw: the count that refused this hit was at least one that does not fit.
        count = row.current or 0
        while fits(row.previous, count, self.limit, weight):
            count += 1
        return wait(row.previous, count, self.limit, self.seconds, elapsed)

    async def _prune(self, *, before: datetime) -> None:
        try:
            async with asyncio.timeout(PATIENCE), self.db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(delete(self.table).where(self.table.c.window_start < before))
        except UNANSWERED as exc:
            log.warning("rate limit: old windows not deleted (again in the next window): %s", describe(exc))

    def _uncounted(self, now: datetime, exc: BaseException) -> None:
        self.uncounted += 1
        if self.warned is None or not self.warned <= now < self.warned + WARN_EVERY:
            log.warning(
                "rate limit: the database does not answer (%s); requests go on uncounted meanwhile: %d since "
                "the last warning",
                describe(exc),
                self.uncounted,
            )
            self.warned = now
            self.uncounted = 0


def hit_statement(t: Table) -> Select[Any]:
    """One hit, counted if it fits: (previous, counted, current) = the previous window's count;
    the current window's after this hit, or NULL if refused; the current window's before it
    (NULL without a row), which says how long a refused client waits."""
    client = bindparam("client", type_=t.c.client.type)
    current = bindparam("current", type_=t.c.window_start.type)
    weight = bindparam("weight", type_=Float())
    limit = bindparam("limit", type_=Integer())
    previous = (
        select(func.coalesce(func.max(t.c.hits), 0).label("hits"))
        .where(t.c.client == client, t.c.window_start == bindparam("previous", type_=t.c.window_start.type))
        .cte("previous")
    )
    first = select(client, current, literal(1)).where(previous.c.hits * weight + 1 <= limit)
    insert = postgresql.insert(t).from_select(["client", "window_start", "hits"], first)
    counted = (
        insert.on_conflict_do_update(
            index_elements=[t.c.client, t.c.window_start],
            set_={"hits": t.c.hits + 1},
            where=select(previous.c.hits).scalar_subquery() * weight + t.c.hits + 1 <= limit,
        )
        .returning(t.c.hits)
        .cte("counted")
    )
    before = select(t.c.hits).where(t.c.client == client, t.c.window_start == current)
    return select(
        select(previous.c.hits).scalar_subquery().label("previous"),
        select(counted.c.hits).scalar_subquery().label("counted"),
        before.scalar_subquery().label("current"),
    )
