"""The inbox forgets what is past its horizon, a batch at a time, on PostgreSQL: after a week of
events with the clock moved a day at a time, it holds only its horizon's, and an event
redelivered inside the horizon still changes nothing."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dispatcher import tables as dispatcher_tables
from dispatcher.bootstrap import bootstrap as dispatcher_bootstrap
from services.district.events import CaseReported, Location
from services.messaging.bus import Record
from services.messaging.envelope import Envelope
from services.runtime.context import build_context
from services.storage.pruning import BATCH, Horizon, Pruner
from tests.support.clock import START, frozen_clock

pytestmark = pytest.mark.integration

KEEP = timedelta(days=3)
DAILY = 300  # inbox rows a day beside the day's real event: more than a batch goes at once


def a_report(clock, n: int) -> Record:
    case_id = f"pruned-{n}-{uuid.uuid4().hex[:8]}"
    event = CaseReported(
        case_id=case_id,
        category="garbage",
        description="bags in the stairwell",
        location=Location(lat=30.505, lon=114.305),
        grid_id="G11",
    )
    envelope = Envelope.wrap(event, source="/intake", time=clock.now())
    return Record("cases", 0, n, case_id, envelope.encode(), {})


async def test_a_week_of_events_leaves_the_inbox_its_horizon(pg_settings):
    clock = frozen_clock(START.replace(hour=0, minute=0, second=0, microsecond=0))
    ctx = build_context(pg_settings, clock=clock)
    parts = dispatcher_bootstrap(ctx)
    consumer, store, inbox = parts.consumers[0], parts.store, parts.store.inbox
    try:
        reports = []
        for day in range(7):
            reports.append(a_report(clock, day))
            assert await consumer.handle(reports[-1])
            async with store.transaction() as tx:
                await tx.first_time("load", [f"load-{day}-{n}" for n in range(DAILY)])
            clock.advance(timedelta(days=1))
        # Now is the start of day 7: days 4, 5 and 6 are inside the horizon.
        pruner = Pruner("dispatcher", ctx.db, clock, [Horizon(inbox, inbox.c.handled_at, KEEP)])
        assert await pruner.prune_once() == {inbox.name: 4 * (DAILY + 1)}
        assert 4 * (DAILY + 1) > BATCH
        async with ctx.db.reading() as conn:
            kept = (await conn.execute(select(func.min(inbox.c.handled_at), func.count()))).one()
        assert kept == (clock.now() - KEEP, 3 * (DAILY + 1))
        assert await pruner.prune_once() == {inbox.name: 0}

        # The event of day 5, delivered again: the inbox still refuses it.
        outbox_before = await _count(ctx, select(func.count()).select_from(store.outbox))
        assert await consumer.handle(reports[5])
        assert await _count(ctx, select(func.count()).select_from(store.outbox)) == outbox_before
        assigned = select(func.count()).where(dispatcher_tables.assignments.c.case_id == reports[5].key)
        assert await _count(ctx, assigned) == 1
    finally:
        await ctx.db.dispose()


async def _count(ctx, query) -> int:
    async with ctx.db.reading() as conn:
        return int(await conn.scalar(query) or 0)
