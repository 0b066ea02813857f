"""Durable SLA timers on real PostgreSQL: exactly once across replicas, catch-up in due order."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dispatcher.bootstrap import bootstrap
from dispatcher.domain import Router
from dispatcher.tables import assignments, history
from dispatcher.tables import timers as timer_rows
from dispatcher.workers import TimerWorker
from services.district.clock import FrozenClock
from services.messaging.transaction import Store
from services.runtime.context import build_context
from services.storage.db import Database
from tests.support.clock import frozen_clock
from tests.support.seed import seed_cases

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(pg_settings):
    context = build_context(pg_settings, clock=frozen_clock())
    yield context
    await context.db.dispose()


def worker(ctx, **kw) -> TimerWorker:
    return TimerWorker(bootstrap(ctx).store, Router(ctx.jurisdiction, ctx.policy), **kw)


async def count(ctx, table, *where) -> int:
    async with ctx.db.sessions() as s:
        return await s.scalar(select(func.count()).select_from(table).where(*where))


async def test_two_replicas_escalate_each_breach_exactly_once(ctx):
    clock: FrozenClock = ctx.clock
    ids = await seed_cases(ctx.db, Router(ctx.jurisdiction, ctx.policy), 300, clock.now())
    clock.advance(timedelta(days=1))  # Monday 09:00 + 1 day: every grid response limit has passed

    a, b = worker(ctx, batch=25), worker(ctx, batch=25)
    fired = await asyncio.gather(a.fire_due(), b.fire_due())
    assert all(n > 0 for n in fired), f"both replicas should share the work, fired {fired}"

    in_batch = history.c.case_id.in_(ids)
    assert await count(ctx, history, in_batch, history.c.type == "case.sla_breached") == 300
    assert await count(ctx, history, in_batch, history.c.type == "case.escalated") == 300
    assert await count(ctx, history, in_batch, history.c.type == "case.sla_warning") == 300
    assert await count(ctx, assignments, assignments.c.case_id.in_(ids), assignments.c.tier == "community") == 300
    # and nothing is left due: a third pass fires nothing
    assert await worker(ctx).fire_due() == 0
    assert await count(ctx, timer_rows, timer_rows.c.case_id.in_(ids), timer_rows.c.due_at <= clock.now()) == 0


async def test_a_dispatcher_that_was_down_fires_everything_that_fell_due_in_due_order(ctx):
    clock: FrozenClock = ctx.clock
    router = Router(ctx.jurisdiction, ctx.policy)
    first = await seed_cases(ctx.db, router, 1, clock.now())
    clock.advance(timedelta(minutes=30))
    second = await seed_cases(ctx.db, router, 1, clock.now())
    clock.advance(timedelta(days=1))  # the dispatcher was down all this time

    await worker(ctx).fire_due()
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                select(history.c.case_id, history.c.type, history.c.details)
                .where(
                    history.c.case_id.in_(first + second), history.c.type.in_(["case.sla_warning", "case.sla_breached"])
                )
                .order_by(history.c.id)
            )
        ).all()
    fired = [(r.case_id, r.type) for r in rows]
    # warnings at 80% of each response limit, then the limits themselves: 30 minutes apart each
    assert fired == [
        (first[0], "case.sla_warning"),
        (second[0], "case.sla_warning"),
        (first[0], "case.sla_breached"),
        (second[0], "case.sla_breached"),
    ]


async def test_a_lease_held_by_a_dead_replica_is_taken_over_after_it_expires(ctx):
    clock: FrozenClock = ctx.clock
    ids = await seed_cases(ctx.db, Router(ctx.jurisdiction, ctx.policy), 20, clock.now())
    clock.advance(timedelta(days=1))
    dead = worker(ctx, lease=timedelta(seconds=30))
    leased = await dead.lease_due()  # ...and then it was killed
    assert len(leased) == 20 * 2  # each case: response warning and breach are due

    alive = worker(ctx, lease=timedelta(seconds=30))
    assert await alive.fire_due() == 0  # leased by the dead replica
    clock.advance(timedelta(seconds=31))
    assert await alive.fire_due() == 40
    assert await count(ctx, history, history.c.case_id.in_(ids), history.c.type == "case.escalated") == 20


async def test_a_lock_timeout_while_firing_is_retried_at_once_and_is_no_timer_failure(ctx):
    """PostgreSQL reports a lock timeout (or a deadlock) as a plain DBAPIError with a sqlstate:
    the batch is taken again at once, not left to wait out its lease as a failed timer."""
    clock: FrozenClock = ctx.clock
    router = Router(ctx.jurisdiction, ctx.policy)
    [case_id] = await seed_cases(ctx.db, router, 1, clock.now())
    clock.advance(timedelta(days=1))
    impatient = Database(ctx.settings.db_url, connect_args={"server_settings": {"lock_timeout": "100"}})
    parts = bootstrap(ctx)
    store = Store(
        impatient,
        source="/dispatcher",
        outbox=parts.store.outbox,
        inbox=parts.store.inbox,
        deadletters=parts.store.deadletters,
        clock=clock,
        topic=ctx.settings.topic,
    )
    try:
        async with ctx.db.transaction() as s:  # someone else holds the case's assignment for a moment
            await s.execute(select(assignments.c.seq).where(assignments.c.case_id == case_id).with_for_update())
            firing = asyncio.create_task(TimerWorker(store, router, lease=timedelta(seconds=30)).fire_due())
            await asyncio.sleep(0.6)
        assert await asyncio.wait_for(firing, 10) == 2  # the response warning and the breach
    finally:
        await impatient.dispose()
    assert await count(ctx, timer_rows, timer_rows.c.case_id == case_id, timer_rows.c.failures > 0) == 0
    assert await count(ctx, history, history.c.case_id == case_id, history.c.type == "case.escalated") == 1
