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

One statement, in autocommit: a CTE reads the previous window's count, and
`INSERT ... ON CONFLICT (client, window_start) DO UPDATE SET hits = hits + g, granted = g ...
RETURNING granted` counts in the current window g hits, as many as fit up to the process's
lease (below), or none. A refused request counts nothing, as in `MovingWindow`: a client that
keeps knocking still gets its limit. The condition is checked on the row as the upsert has
locked it, so replicas counting one client at the same moment never let more through than the
limit. No BEGIN and COMMIT around it: one round trip.

Leases. A statement per hit serialised a busy client's requests on its row's lock: one API key
or one address (a carrier's NAT, a department's system) at 32 concurrent requests took intake
from 1,150 reports a second (limits in memory) to 290. So a process asks for a lease of hits at
once, LEASE_SHARE of the limit (at least one), counted in the database as it is granted, and
spends them from memory; what it has not spent when the window ends is never handed out, so
the replicas together still let through no more than the limit, and a client may be refused at
most (replicas x lease) hits early. With the default limit, 120 a minute, the lease is 2 hits. A
refused client is refused from memory until the moment the statement said another hit would
fit: a client that floods costs the database nothing until then (other replicas' hits can only
make that moment later).

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Column, Float, Integer, MetaData, Select, String, Table, bindparam, cast, delete, func, select
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
LEASE_SHARE = 0.02  # of the limit: the hits a process takes from the database at a time (the docstring says why)
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
        Column("granted", Integer, nullable=False, doc="the hits the last statement counted: the lease it gave"),
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


@dataclass
class Lease:
    """A client's hits this process holds: counted in the database in `window`, not spent yet;
    or, after a refusal, the moment before which the client is refused without asking."""

    window: datetime
    spare: int = 0
    refused_until: datetime | None = None


class DatabaseWindow:
    """A `Window` (services/web/ratelimit.py) in `table`, shared by every process on `db`."""

    def __init__(self, table: Table, db: Database, clock: Clock, limit: int, seconds: float) -> None:
        self.table = table
        self.db = db
        self.clock = clock
        self.limit = limit
        self.seconds = seconds
        self.lease = max(1, int(limit * LEASE_SHARE))
        self.statement = hit_statement(table)
        self.leases: dict[str, Lease] = {}
        self.leasing: set[str] = set()  # clients whose lease this process is asking for
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
        held = self.leases.get(client)
        if held is not None:
            if held.refused_until is not None and now < held.refused_until:
                return (held.refused_until - now).total_seconds()
            if held.window == current and held.spare > 0:
                held.spare -= 1
                return 0.0
        # One lease at a time per client: the client's requests that come meanwhile count one hit
        # each, or a burst of them would take a lease each and hold most of the limit unspent.
        leasing = client not in self.leasing
        values = {
            "client": client,
            "current": current,
            "previous": previous,
            "weight": weight,
            "limit": self.limit,
            "want": self.lease if leasing else 1,
        }
        if leasing:
            self.leasing.add(client)
        try:
            async with asyncio.timeout(PATIENCE), self.db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (await autocommit.execute(self.statement, values)).one()
        except UNANSWERED as exc:
            self._uncounted(now, exc)
            return 0.0
        finally:
            if leasing:
                self.leasing.discard(client)
        if self.pruned != current:
            self.pruned = current  # before the wait: the requests meanwhile do not prune as well
            self.leases = {
                c: x
                for c, x in self.leases.items()
                if x.window == current or (x.refused_until is not None and now < x.refused_until)
            }
            await self._prune(before=previous)
        held = self.leases.get(client)
        if held is not None and (held.window != current or held.refused_until is not None):
            held = None  # not a lease of this window's hits
        if row.counted is not None:
            if held is not None:
                held.spare += row.counted - 1  # another request of the client's took a lease meanwhile
            elif row.counted > 1:
                self.leases[client] = Lease(current, row.counted - 1)
            return 0.0
        if held is not None and held.spare > 0:  # a lease came meanwhile: this hit is in it
            held.spare -= 1
            return 0.0
        # `current` was read in the statement's snapshot, which may predate hits of other requests
        # that the upsert saw: the count that refused this hit was at least one that does not fit.
        count = row.current or 0
        while fits(row.previous, count, self.limit, weight):
            count += 1
        until = wait(row.previous, count, self.limit, self.seconds, elapsed)
        self.leases[client] = Lease(current, refused_until=now + timedelta(seconds=until))
        return until

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
    """Up to `want` hits, counted as far as they fit: (previous, counted, current) = the
    previous window's count; the hits counted now (at least one), or NULL if none fit; the
    current window's count before (NULL without a row), which says how long a refused client
    waits."""
    client = bindparam("client", type_=t.c.client.type)
    current = bindparam("current", type_=t.c.window_start.type)
    weight = bindparam("weight", type_=Float())
    limit = bindparam("limit", type_=Integer())
    want = bindparam("want", type_=Integer())
    previous = (
        select(func.coalesce(func.max(t.c.hits), 0).label("hits"))
        .where(t.c.client == client, t.c.window_start == bindparam("previous", type_=t.c.window_start.type))
        .cte("previous")
    )
    previously = select(previous.c.hits).scalar_subquery()

    def room(hits: Any) -> Any:
        """The hits that fit beside `hits` of the current window, up to `want`: 1 or more if any fit."""
        return cast(func.least(want, func.floor(limit - previously * weight - hits)), Integer)

    first = select(client, current, room(0), room(0)).where(room(0) >= 1)
    insert = postgresql.insert(t).from_select(["client", "window_start", "hits", "granted"], first)
    counted = (
        insert.on_conflict_do_update(
            index_elements=[t.c.client, t.c.window_start],
            set_={"hits": t.c.hits + room(t.c.hits), "granted": room(t.c.hits)},
            where=room(t.c.hits) >= 1,
        )
        .returning(t.c.granted)
        .cte("counted")
    )
    before = select(t.c.hits).where(t.c.client == client, t.c.window_start == current)
    return select(
        previously.label("previous"),
        select(counted.c.granted).scalar_subquery().label("counted"),
        before.scalar_subquery().label("current"),
    )
