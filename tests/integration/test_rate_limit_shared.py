"""The residents' rate limit counted in intake's PostgreSQL database: two intake replicas (two
`RateLimit`s, each on an engine of its own) hold one limit together, the window slides with the
injected clock, and windows older than the previous one are deleted."""

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import event, select, text

from gridcall.app import build_app
from intake import tables
from intake.bootstrap import rate_window
from services.district.clock import FrozenClock
from services.district.errors import RateLimited
from services.runtime.context import build_context
from services.runtime.settings import Settings
from services.storage.db import Database
from services.web.ratelimit import MovingWindow, RateLimit
from services.web.ratewindow import DatabaseWindow
from tests.support.clock import START, frozen_clock
from tests.support.journey import TEST_SECRET

pytestmark = pytest.mark.integration

# Each test counts at a time of its own, a day after the previous test's, on the minute.
TEST_DAYS = itertools.count(1)


@pytest.fixture
def clock() -> FrozenClock:
    return frozen_clock(START.replace(second=0, microsecond=0) + timedelta(days=next(TEST_DAYS)))


@pytest.fixture
async def replicas(pg_url: str, clock: FrozenClock) -> AsyncIterator[list[RateLimit]]:
    """Two intake replicas' rate limits, 10 a minute, on one database and one (frozen) time."""
    dbs = [Database(pg_url), Database(pg_url)]

    def on(db: Database) -> RateLimit:
        return RateLimit(
            "10/minute", window=lambda limit, seconds: DatabaseWindow(tables.rate_windows, db, clock, limit, seconds)
        )

    yield [on(db) for db in dbs]
    for db in dbs:
        await db.dispose()


def someone() -> Request:
    """A request from an address of its own."""
    address = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": (address, 40000)})


async def accepted(limit: RateLimit, request: Request, times: int = 1) -> list[str | None]:
    """The Retry-After of each of `times` hits; None for a hit let through."""
    answers: list[str | None] = []
    for _ in range(times):
        try:
            await limit(request)
            answers.append(None)
        except RateLimited as refused:
            answers.append(refused.headers["Retry-After"])
    return answers


async def test_a_client_longer_than_the_column_is_counted_by_its_hash_not_let_through(replicas):
    """A trusted proxy passes an address on as it came: any length."""
    address = "2001:db8::" + "f" * 200
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": (address, 40000)})
    answers = await accepted(replicas[0], request, 10) + await accepted(replicas[1], request)
    assert answers[:10] == [None] * 10 and answers[10] is not None


async def test_two_replicas_hold_one_limit_together(replicas):
    a, b = replicas
    resident = someone()
    assert await accepted(a, resident, 6) == [None] * 6
    assert await accepted(b, resident, 4) == [None] * 4
    # The 11th: this minute holds 10, so the next minute, where they weigh 9 after 6 s: 66 s.
    assert await accepted(b, resident) == ["66"]
    assert await accepted(a, resident) == ["66"]
    assert await accepted(b, someone()) == [None]  # another client has a window of its own


async def test_replicas_hit_at_the_same_moment_let_the_limit_through_and_no_more(replicas):
    a, b = replicas
    resident = someone()
    answers = await asyncio.gather(*(accepted(limit, resident) for limit in [a, b] * 15))
    assert Counter(answer for [answer] in answers) == {None: 10, "66": 20}


@pytest.fixture
async def busy(pg_url: str, clock: FrozenClock) -> AsyncIterator[tuple[list[RateLimit], list[str]]]:
    """Two replicas' rate limits of 500 a minute (leases of 10 hits), and the counting
    statements they send to the database."""
    dbs = [Database(pg_url), Database(pg_url)]
    sent: list[str] = []
    for db in dbs:

        @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
        def _sent(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().startswith("WITH previous"):
                sent.append(statement)

    def on(db: Database) -> RateLimit:
        return RateLimit(
            "500/minute", window=lambda limit, seconds: DatabaseWindow(tables.rate_windows, db, clock, limit, seconds)
        )

    yield [on(db) for db in dbs], sent
    for db in dbs:
        await db.dispose()


async def test_a_busy_client_is_counted_a_lease_at_a_time_and_a_refused_one_from_memory(busy, clock: FrozenClock):
    (a, b), sent = busy
    resident = someone()
    answers = [answer for _ in range(300) for limit in (a, b) for answer in await accepted(limit, resident)]
    assert answers[:500] == [None] * 500  # the replicas spent every hit they were granted
    assert set(answers[500:]) == {"61"}  # and no more: 0.12 s into the next minute 500 weigh 499
    # 50 leases of 10, and one refusal each; the 98 refusals after those were answered from memory
    assert len(sent) == 52
    clock.advance(timedelta(seconds=20))
    assert await accepted(a, resident) == await accepted(b, resident) == ["41"]  # memory: 20 s less to wait
    assert len(sent) == 52


async def test_a_burst_of_one_client_takes_one_lease_a_replica_and_the_limit_exactly(busy):
    (a, b), _ = busy
    resident = someone()
    for _ in range(24):  # 480 hits: 24 leases each, spent
        assert await accepted(a, resident, 10) + await accepted(b, resident, 10) == [None] * 20
    burst = await asyncio.gather(*(accepted(limit, resident) for limit in [a, b] * 15))
    # Each replica's first request of the burst asked for a lease of 10, the others for a hit
    # each: the limit's last 20 hits were granted, at most 9 a replica held back for later.
    let_through = sum(answer is None for [answer] in burst)
    assert 20 - 2 * 9 <= let_through <= 20
    after = await accepted(a, resident, 20) + await accepted(b, resident, 20)
    assert 480 + let_through + after.count(None) == 500  # the held-back hits went to the next requests


async def test_the_window_slides_with_the_clock(replicas, clock: FrozenClock):
    a, b = replicas
    resident = someone()
    clock.advance(timedelta(seconds=30))
    assert await accepted(a, resident, 11) == [None] * 10 + ["36"]
    # 15 s into the next minute the previous one weighs 7.5: two more fit (8.5, 9.5), not a third.
    clock.advance(timedelta(seconds=45))
    assert await accepted(b, resident, 3) == [None, None, "3"]
    clock.advance(timedelta(seconds=3))  # 18 s in, it weighs 7: 7 + 2 + 1 fits
    assert await accepted(a, resident, 2) == [None, "6"]  # now 3 this minute: until it weighs 6, at 24 s
    clock.advance(timedelta(minutes=2))  # both minutes have slid out
    assert await accepted(b, resident, 10) == [None] * 10


async def test_windows_before_the_previous_one_are_deleted(replicas, clock: FrozenClock, pg_url: str):
    a, _ = replicas
    clients = [someone() for _ in range(3)]
    for each in clients:  # a window each: two minutes ago, a minute ago, now
        await accepted(a, each)
        clock.advance(timedelta(minutes=1))
    clock.advance(timedelta(minutes=-1))
    now = clock.now()
    db = Database(pg_url)
    try:
        async with db.sessions() as s:
            t = tables.rate_windows
            kept = (await s.execute(select(t.c.window_start).where(t.c.window_start <= now))).scalars().all()
            unlogged = await s.scalar(
                text("SELECT relpersistence::text FROM pg_class WHERE relname = 'intake_rate_windows'")
            )
    finally:
        await db.dispose()
    assert sorted(kept) == [now - timedelta(minutes=1), now]
    assert unlogged == "u"  # counters need no crash safety: no WAL, no fsync per hit


async def test_intake_counts_in_its_database_on_postgresql_and_in_memory_on_sqlite(pg_url, tmp_path: Path):
    async def window(settings: Settings) -> object:
        ctx = build_context(settings)
        try:
            return rate_window(ctx)(10, 60)
        finally:
            await ctx.db.dispose()

    on_postgres = Settings(env="test", var_dir=tmp_path, database_url=pg_url, secret_key=TEST_SECRET)
    assert isinstance(await window(on_postgres), DatabaseWindow)
    assert isinstance(await window(on_postgres.model_copy(update={"rate_limit_store": "memory"})), MovingWindow)
    assert isinstance(await window(Settings(env="test", var_dir=tmp_path, secret_key=TEST_SECRET)), MovingWindow)


async def test_two_intake_apps_on_one_database_share_the_limit(pg_url, tmp_path: Path, clock: FrozenClock):
    """The same through HTTP: two intake apps, as two replicas behind a balancer."""

    address = someone().client.host  # type: ignore[union-attr]

    def intake(name: str) -> httpx.AsyncClient:
        settings = Settings(
            env="test", var_dir=tmp_path / name, database_url=pg_url, rate_limit="3/minute", secret_key=TEST_SECRET
        )
        transport = httpx.ASGITransport(app=build_app(settings, ["intake"], clock=clock), client=(address, 1))
        return httpx.AsyncClient(transport=transport, base_url="http://intake")

    track = {"X-Tracking-Token": "not-a-token"}
    async with intake("one") as one, intake("two") as two:
        answers = [await c.get("/v1/cases/no-such-case", headers=track) for c in (one, two, one, two)]
    assert [r.status_code for r in answers] == [404, 404, 404, 429]
    assert answers[-1].headers["Retry-After"] == "80"  # 60 s, then 20 s until 3 a minute ago weigh 2
