"""Outbox, inbox and offsets on real PostgreSQL and the real broker."""

import asyncio
import copy
import uuid

import pytest
from sqlalchemy import func, select

from dispatcher import tables as dispatcher_tables
from dispatcher.bootstrap import bootstrap as dispatcher_bootstrap
from services.district.events import CaseClosed, CaseReported, Location, Stream
from services.messaging.bus import TYPE_HEADER, Message, Record
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope
from services.messaging.relay import Relay
from services.runtime.context import build_context
from services.runtime.lifecycle import Stop
from services.storage.db import Database
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(pg_settings):
    context = build_context(pg_settings)
    await context.bus.start()
    await context.bus.ensure_topics([pg_settings.topic(s) for s in Stream])
    yield context
    await context.bus.stop()
    await context.db.dispose()


def reported(case_id: str) -> CaseReported:
    return CaseReported(
        case_id=case_id,
        category="garbage",
        description="bags in the stairwell",
        location=Location(lat=30.505, lon=114.305),
        grid_id="G11",
    )


async def read_all(ctx, stream: Stream, want: int, group: str | None = None) -> list[Envelope]:
    sub = ctx.bus.subscribe(group or f"reader-{uuid.uuid4().hex[:6]}", [ctx.settings.topic(stream)])
    await sub.start()
    got = []
    try:
        for _ in range(30):
            got += await sub.fetch(timeout=0.5)
            if len(got) >= want:
                # one more short fetch so that an extra record would be seen
                got += await sub.fetch(timeout=0.5)
                break
    finally:
        await sub.stop()
    return [Envelope.decode(r.value) for r in got]


async def test_relay_publishes_exactly_the_committed_events(ctx):
    store = dispatcher_bootstrap(ctx).store
    kept, dropped = f"kept-{uuid.uuid4()}", f"dropped-{uuid.uuid4()}"
    async with store.transaction() as tx:
        tx.emit(reported(kept))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            tx.emit(reported(dropped))
            raise RuntimeError("the state change failed, so its event must never leave")

    relay = Relay(store, ctx.bus)
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0  # published rows are gone from the outbox

    published = await read_all(ctx, Stream.CASES, 1)
    assert [e.subject for e in published] == [kept]
    assert published[0].source == "/dispatcher"


async def test_relayed_records_carry_their_type_header_on_the_broker(ctx):
    store = dispatcher_bootstrap(ctx).store
    case_id = f"typed-{uuid.uuid4()}"
    async with store.transaction() as tx:
        tx.emit(reported(case_id))
    assert await Relay(store, ctx.bus).relay_once() == 1
    sub = ctx.bus.subscribe(f"typed-{uuid.uuid4().hex[:6]}", [ctx.settings.topic(Stream.CASES)])
    await sub.start()
    try:
        for _ in range(30):
            mine = [r for r in await sub.fetch(timeout=0.5) if r.key == case_id]
            if mine:
                break
    finally:
        await sub.stop()
    structured = {"content-type": "application/cloudevents+json"}  # the CloudEvents Kafka binding's
    assert [r.headers for r in mine] == [{**structured, TYPE_HEADER: CaseReported.type}]


async def test_a_redelivered_event_changes_nothing(ctx):
    parts = dispatcher_bootstrap(ctx)
    consumer = parts.consumers[0]
    case_id = f"c-{uuid.uuid4()}"
    envelope = Envelope.wrap(reported(case_id), source="/intake", time=ctx.clock.now())
    record = await _as_record(ctx, envelope)

    for _ in range(3):
        await consumer.handle(record)
    await asyncio.gather(*(consumer.handle(record) for _ in range(3)))  # and concurrently

    async with ctx.db.sessions() as s:
        cases = await s.scalar(
            select(func.count())
            .select_from(dispatcher_tables.cases)
            .where(dispatcher_tables.cases.c.case_id == case_id)
        )
        assignments = await s.scalar(
            select(func.count())
            .select_from(dispatcher_tables.assignments)
            .where(dispatcher_tables.assignments.c.case_id == case_id)
        )
        events = await s.scalar(
            select(func.count()).select_from(dispatcher_tables.outbox).where(dispatcher_tables.outbox.c.key == case_id)
        )
    assert (cases, assignments, events) == (1, 1, 1)


async def _as_record(ctx, envelope: Envelope):
    """Put the envelope on the real broker and read it back as the consumer would see it."""
    topic = ctx.settings.topic(Stream.CASES)
    await ctx.bus.publish([Message(topic, envelope.subject, envelope.encode())])
    sub = ctx.bus.subscribe(f"once-{uuid.uuid4().hex[:6]}", [topic])
    await sub.start()
    try:
        for _ in range(30):
            for r in await sub.fetch(timeout=0.5):
                if r.key == envelope.subject:
                    return r
    finally:
        await sub.stop()
    raise AssertionError("record never arrived")


class Killed(Exception):
    """Stands for kill -9 between the effect's commit and the offset commit."""


async def test_a_consumer_killed_before_committing_offsets_resumes_without_loss_or_doubles(ctx, monkeypatch):
    parts = dispatcher_bootstrap(ctx)
    consumer = parts.consumers[0]
    batch = [f"crash-{i}-{uuid.uuid4()}" for i in range(20)]
    topic = ctx.settings.topic(Stream.CASES)
    await ctx.bus.publish(
        [Message(topic, c, Envelope.wrap(reported(c), source="/intake", time=ctx.clock.now()).encode()) for c in batch]
    )

    handled: list[str] = []
    handle_batch = consumer.handle_batch

    async def then_killed_after_seven(records, stop=None):
        assert await handle_batch(records, stop)
        handled.extend(r.key for r in records)
        if len(handled) >= 7:
            raise Killed  # the effects are committed, the offsets are not

    monkeypatch.setattr(consumer, "handle_batch", then_killed_after_seven)
    with pytest.raises(Killed):
        await consumer.run(Stop())
    assert len(handled) >= 7

    stop = Stop()
    restarted = asyncio.create_task(dispatcher_bootstrap(ctx).consumers[0].run(stop))
    try:

        async def all_dispatched() -> bool:
            async with ctx.db.sessions() as s:
                n = await s.scalar(
                    select(func.count())
                    .select_from(dispatcher_tables.cases)
                    .where(dispatcher_tables.cases.c.case_id.in_(batch))
                )
            return n == len(batch)

        await eventually(all_dispatched, timeout=40)
    finally:
        stop.set()
        await restarted

    async with ctx.db.sessions() as s:
        events = (
            await s.execute(select(dispatcher_tables.outbox.c.key).where(dispatcher_tables.outbox.c.key.in_(batch)))
        ).all()
    assert sorted(k for (k,) in events) == sorted(batch)  # one CaseAssigned per case, none doubled


async def test_an_event_that_cannot_be_handled_is_parked_and_the_rest_go_on(ctx):
    consumer = dispatcher_bootstrap(ctx).consumers[0]
    topic = ctx.settings.topic(Stream.CASES)
    good = f"after-poison-{uuid.uuid4()}"
    unroutable = reported(f"poison-{uuid.uuid4()}").model_copy(update={"category": "ufo"})
    await ctx.bus.publish(
        [
            Message(topic, "poison", b"this is not an event"),
            Message(topic, unroutable.case_id, Envelope.wrap(unroutable, source="/x", time=ctx.clock.now()).encode()),
            Message(topic, good, Envelope.wrap(reported(good), source="/intake", time=ctx.clock.now()).encode()),
        ]
    )
    stop = Stop()
    running = asyncio.create_task(consumer.run(stop))
    try:

        async def good_one_dispatched() -> bool:
            async with ctx.db.sessions() as s:
                return bool(await s.scalar(select(func.count()).where(dispatcher_tables.cases.c.case_id == good)))

        await eventually(good_one_dispatched, timeout=40)

        async def both_parked() -> list:
            parked = await consumer.store.parking.parked(consumer.name)
            return parked if len(parked) == 2 else []

        parked = await eventually(both_parked, timeout=20)
    finally:
        stop.set()
        await running
    by_key = {p.case_id: p for p in parked}  # different keys, different partitions: no order between them
    assert set(by_key) == {"poison", unroutable.case_id}
    assert by_key["poison"].payload == b"this is not an event" and by_key["poison"].event_id is None
    assert "UnknownEvent" in by_key["poison"].error
    assert "unknown category 'ufo'" in by_key[unroutable.case_id].error
    assert by_key[unroutable.case_id].event_type == "gridcall.case.reported"
    assert {p.consumer for p in parked} == {consumer.name}


async def test_one_bad_record_in_a_batch_is_parked_and_takes_back_only_its_own_effects(ctx):
    """A batch is one transaction, but each record's effect, events and inbox row stand or fall alone."""
    store = dispatcher_bootstrap(ctx).store
    history = dispatcher_tables.history

    async def handler(tx, envelope, event):  # writes, emits, and then (for "bad-") fails like a bug
        await tx.session.execute(
            history.insert().values(case_id=event.case_id, at=ctx.clock.now(), type="test", details={})
        )
        tx.emit(CaseClosed(case_id=event.case_id, reason="test"))
        if event.case_id.startswith("bad-"):
            raise RuntimeError("a bug in the handler")

    consumer = Consumer(f"batch-{uuid.uuid4().hex[:6]}", store, ctx.bus, {CaseReported: handler}, [Stream.CASES])
    run = uuid.uuid4().hex[:8]
    keys = [f"good-{run}-1", f"bad-{run}", f"good-{run}-2"]
    topic = ctx.settings.topic(Stream.CASES)
    records = [
        Record(topic, 0, n, k, Envelope.wrap(reported(k), source="/intake", time=ctx.clock.now()).encode())
        for n, k in enumerate(keys)
    ]
    for _ in range(2):  # and a redelivery of the whole batch changes nothing more
        assert await consumer.handle_batch(records)

    async with ctx.db.sessions() as s:
        written = (await s.scalars(select(history.c.case_id).where(history.c.case_id.in_(keys)))).all()
        emitted = (await s.scalars(select(store.outbox.c.key).where(store.outbox.c.key.in_(keys)))).all()
    assert sorted(written) == sorted(emitted) == [keys[0], keys[2]]
    [parked] = await store.parking.parked(consumer.name)
    assert parked.case_id == keys[1] and "a bug in the handler" in parked.error
    assert parked.attempts == 2  # parked on each delivery, kept once


async def test_a_record_the_database_refuses_outright_is_parked_not_retried_forever(ctx):
    """A write PostgreSQL refuses for good (a value longer than its column) is no transient
    failure: the record is dead-lettered and the rest of its batch goes on."""
    store = dispatcher_bootstrap(ctx).store
    history = dispatcher_tables.history

    async def handler(tx, envelope, event):
        kind = "t" * 100 if event.case_id.startswith("long-") else "t"  # the column holds 64
        row = {"case_id": event.case_id, "at": ctx.clock.now(), "type": kind, "details": {}}
        await tx.session.execute(history.insert().values(**row))

    consumer = Consumer(f"long-{uuid.uuid4().hex[:6]}", store, ctx.bus, {CaseReported: handler}, [Stream.CASES])
    run = uuid.uuid4().hex[:8]
    keys = [f"fine-{run}", f"long-{run}"]
    topic = ctx.settings.topic(Stream.CASES)
    envelopes = [Envelope.wrap(reported(k), source="/intake", time=ctx.clock.now()) for k in keys]
    records = [Record(topic, 0, n, k, e.encode()) for n, (k, e) in enumerate(zip(keys, envelopes, strict=True))]
    assert await asyncio.wait_for(consumer.handle_batch(records), timeout=30)
    async with ctx.db.sessions() as s:
        written = (await s.scalars(select(history.c.case_id).where(history.c.case_id.in_(keys)))).all()
    assert written == [keys[0]]
    [parked] = await store.parking.parked(consumer.name)
    assert parked.event_id == envelopes[1].id and "too long" in parked.error


async def test_a_relay_cut_off_from_the_database_mid_commit_does_not_hold_the_outbox(ctx):
    """The database falls silent between a relay's claim of its rows and its commit: the relay
    gives up on its connection (the statement timeout), but the server, which never heard it
    go, keeps the session and its transaction, and with it the outbox's advisory lock. The
    server ends that session (idle in a transaction too long), and the next relay publishes."""
    store = dispatcher_bootstrap(ctx).store
    case_id = f"cut-{uuid.uuid4()}"
    async with store.transaction() as tx:
        tx.emit(reported(case_id))

    proxy = FaultProxy.in_front_of(ctx.db.url)
    silent = Database(proxy.route(ctx.db.url), application_name="cut-off", command_timeout=1, idle_in_transaction=8)

    class FallsSilentOnAcknowledgement:
        async def publish(self, messages: list[Message]) -> None:
            proxy.drop()  # the broker has the rows; the commit that follows is never answered

    cut_off = copy.copy(store)
    cut_off.db = silent
    try:
        with pytest.raises(TimeoutError):  # the commit went unanswered: the connection is dropped
            await Relay(cut_off, FallsSilentOnAcknowledgement()).relay_once()  # type: ignore[arg-type]
        relay = Relay(store, ctx.bus)
        assert await relay.relay_once() == 0  # the server still holds the cut-off transaction's lock

        async def published() -> bool:
            return await relay.relay_once() > 0

        await eventually(published, timeout=30)
    finally:
        await silent.dispose()
        await asyncio.to_thread(proxy.close)
    async with ctx.db.reading() as conn:  # acknowledged by the broker, so gone from the outbox
        assert await conn.scalar(select(func.count()).where(store.outbox.c.key == case_id)) == 0
