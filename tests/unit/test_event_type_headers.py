"""The `ce_type` record header (embedded mode: SQLite and the local bus): the relay sets it from
the payload, and a consumer skips records of types it has no handler for without decoding
them, committing them like any other; records without the header are decoded as before."""

import asyncio
import uuid
from datetime import UTC, datetime

from dispatcher.bootstrap import bootstrap as dispatcher_bootstrap
from services.district.events import CaseClosed, CaseReported, Location, Stream
from services.messaging.bus import TYPE_HEADER, Message, type_headers
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope
from services.messaging.relay import Relay
from services.runtime.context import build_context
from services.runtime.lifecycle import Stop

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _reported(case_id: str) -> CaseReported:
    where = Location(lat=30.505, lon=114.305)
    return CaseReported(case_id=case_id, category="garbage", description="bags", location=where, grid_id="G11")


def test_type_headers_read_the_type_from_an_encoded_envelope_only():
    encoded = Envelope.wrap(CaseClosed(case_id="c1", reason="done"), source="/x", time=NOW).encode()
    assert type_headers(encoded) == {
        "content-type": "application/cloudevents+json",
        TYPE_HEADER: "gridcall.case.closed",
    }
    assert type_headers(b"not json") == {}
    assert type_headers(b'{"id":"e","type":"gridcall.case.closed"}') == {}  # not as `encode` writes it


async def test_the_relay_publishes_each_record_with_its_type_header(embedded_settings):
    ctx = build_context(embedded_settings)
    await ctx.bus.start()
    try:
        store = dispatcher_bootstrap(ctx).store
        async with store.transaction() as tx:
            tx.emit(_reported("c-header"))
            tx.emit(CaseClosed(case_id="c-header", reason="done"))
        assert await Relay(store, ctx.bus).relay_once() == 2
        sub = ctx.bus.subscribe("reader", [ctx.settings.topic(Stream.CASES)])
        await sub.start()
        records = await sub.fetch(timeout=1)
        structured = {"content-type": "application/cloudevents+json"}
        assert [r.headers for r in records] == [
            {**structured, TYPE_HEADER: "gridcall.case.reported"},
            {**structured, TYPE_HEADER: "gridcall.case.closed"},
        ]
    finally:
        await ctx.bus.stop()
        await ctx.db.dispose()


async def test_a_consumer_skips_unhandled_types_without_decoding_and_commits_them(embedded_settings):
    ctx = build_context(embedded_settings)
    await ctx.bus.start()
    try:
        store = dispatcher_bootstrap(ctx).store
        seen: list[str] = []

        async def handler(tx, envelope, event):
            seen.append(event.case_id)

        consumer = Consumer("header-test", store, ctx.bus, {CaseReported: handler}, [Stream.CASES])
        topic = ctx.settings.topic(Stream.CASES)
        now = ctx.clock.now()
        handled_with, handled_without = f"with-{uuid.uuid4()}", f"without-{uuid.uuid4()}"
        closed = Envelope.wrap(CaseClosed(case_id="closed", reason="done"), source="/x", time=now).encode()
        await ctx.bus.publish(
            [
                # an unhandled type by its header: skipped without decoding, so garbage is no error
                Message(topic, "skipped", b"\x00 not an envelope", {TYPE_HEADER: CaseClosed.type}),
                # an unhandled type without the header (an older relay): decoded, then ignored
                Message(topic, "closed", closed),
                # handled types, with and without the header
                Message(
                    topic,
                    handled_with,
                    Envelope.wrap(_reported(handled_with), source="/x", time=now).encode(),
                    {TYPE_HEADER: CaseReported.type},
                ),
                Message(
                    topic, handled_without, Envelope.wrap(_reported(handled_without), source="/x", time=now).encode()
                ),
                # a header naming no known type: decoded as today, and garbage is parked
                Message(topic, "unknown", b"garbage", {TYPE_HEADER: "gridcall.case.teleported"}),
            ]
        )
        stop = Stop()
        running = asyncio.create_task(consumer.run(stop))
        for _ in range(200):
            if len(seen) == 2 and await store.parking.count_parked("header-test") == 1:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(running, timeout=10)

        assert seen == [handled_with, handled_without]
        [parked] = await store.parking.parked("header-test")
        assert parked.payload == b"garbage"  # the skipped record was not dead-lettered
        sub = ctx.bus.subscribe("header-test", [topic])  # every record was committed, skipped ones too
        await sub.start()
        assert await sub.fetch(timeout=0.2) == []
    finally:
        await ctx.bus.stop()
        await ctx.db.dispose()
