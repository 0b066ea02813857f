"""Consumer batches in embedded mode (SQLite, one writer at a time, local bus): a record that
fails on a constraint is parked without stalling the writer for its batch mates."""

import asyncio
import uuid

from sqlalchemy import select

from dispatcher import tables
from dispatcher.bootstrap import bootstrap as dispatcher_bootstrap
from services.district.events import CaseReported, Location, Stream
from services.messaging.bus import Record
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope
from services.runtime.context import build_context


async def test_a_constraint_failure_in_a_batch_parks_that_record_only(embedded_settings):
    ctx = build_context(embedded_settings)
    await ctx.bus.start()
    try:
        store = dispatcher_bootstrap(ctx).store
        timers = tables.timers

        async def handler(tx, envelope, event):  # every event claims the same timer row: the second one fails
            same = {"case_id": "same", "assignment_id": "a", "kind": "k", "due_at": ctx.clock.now()}
            await tx.session.execute(timers.insert().values(**same))
            await tx.session.execute(
                tables.history.insert().values(case_id=event.case_id, at=ctx.clock.now(), type="t", details={})
            )

        consumer = Consumer("batch-test", store, ctx.bus, {CaseReported: handler}, [Stream.CASES])
        topic = ctx.settings.topic(Stream.CASES)
        keys = [f"first-{uuid.uuid4()}", f"second-{uuid.uuid4()}"]
        records = [
            Record(topic, 0, n, k, Envelope.wrap(_reported(k), source="/intake", time=ctx.clock.now()).encode())
            for n, k in enumerate(keys)
        ]
        assert await asyncio.wait_for(consumer.handle_batch(records), timeout=20)
        async with ctx.db.sessions() as s:
            written = (await s.scalars(select(tables.history.c.case_id))).all()
        assert written == [keys[0]]
        [parked] = await store.parking.parked("batch-test")
        assert parked.case_id == keys[1] and "IntegrityError" in parked.error
    finally:
        await ctx.bus.stop()
        await ctx.db.dispose()


def _reported(case_id: str) -> CaseReported:
    where = Location(lat=30.505, lon=114.305)
    return CaseReported(case_id=case_id, category="garbage", description="bags", location=where, grid_id="G11")
