"""The dispatcher's set-based paths on real PostgreSQL: a batch of events is loaded once and
saved once as a few statements, ends as if its events were handled one by one, and parks only
its failing records; due timers are fired by the thousand, each once, in due order per case,
by two workers at once; an idle worker wakes when the next timer falls due."""

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from dispatcher import handlers, repository
from dispatcher.bootstrap import bootstrap
from dispatcher.domain import Router
from dispatcher.tables import assignments, cases, history, outbox
from dispatcher.tables import timers as timer_rows
from dispatcher.workers import TimerWorker
from services.district.clock import FrozenClock
from services.district.events import (
    CaseReported,
    CaseSatisfactionAnswered,
    Event,
    Location,
    Stream,
    TicketClaimed,
    TicketResolved,
)
from services.messaging.bus import Record
from services.messaging.envelope import Envelope
from services.runtime.context import build_context
from services.runtime.lifecycle import Stop
from tests.support.clock import START, frozen_clock
from tests.support.seed import seed_cases
from tests.support.statements import statements

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(pg_settings):
    context = build_context(pg_settings, clock=frozen_clock())
    yield context
    await context.db.dispose()


def reported(case_id: str) -> CaseReported:
    where = Location(lat=30.505, lon=114.305)
    return CaseReported(case_id=case_id, category="garbage", description="bags", location=where, grid_id="G11")


def records(ctx, events: list[Event]) -> list[Record]:
    """The events as one partition's records, in this order."""
    topic = ctx.settings.topic(Stream.CASES)
    return [
        Record(topic, 0, n, e.case_id, Envelope.wrap(e, source="/test", time=ctx.clock.now()).encode())
        for n, e in enumerate(events)
    ]


def lifecycle(case_id: str) -> list[Event]:
    """Reported, claimed, resolved, the resident unsatisfied (reopened: a second assignment),
    claimed again: assignments added and changed, timers cancelled and added."""
    first, second = f"{case_id}-1", f"{case_id}-2"
    return [
        reported(case_id),
        TicketClaimed(case_id=case_id, ticket_id=first, unit_id="U-G11"),
        TicketResolved(case_id=case_id, ticket_id=first, unit_id="U-G11", note="swept"),
        CaseSatisfactionAnswered(case_id=case_id, satisfied=False, comment="still there"),
        TicketClaimed(case_id=case_id, ticket_id=second, unit_id="U-G11"),
    ]


async def snapshot(ctx, case_id: str) -> str:
    """Everything the dispatcher holds and sent about a case, its id blanked out."""
    async with ctx.db.sessions() as s:
        case = (await s.execute(select(cases).where(cases.c.case_id == case_id))).one()._asdict()
        given = [r._asdict() for r in await s.execute(select(assignments).where(assignments.c.case_id == case_id))]
        pending = await s.execute(
            select(timer_rows.c.assignment_id, timer_rows.c.kind, timer_rows.c.due_at).where(
                timer_rows.c.case_id == case_id
            )
        )
        trail = await s.execute(
            select(history.c.type, history.c.details).where(history.c.case_id == case_id).order_by(history.c.id)
        )
        sent = await s.scalars(select(outbox.c.payload).where(outbox.c.key == case_id).order_by(outbox.c.id))
        state = {
            "case": case,
            "assignments": sorted(given, key=lambda a: a["seq"]),
            "timers": sorted(tuple(t) for t in pending),
            "history": [tuple(h) for h in trail],
            "sent": [(e.type, e.data) for e in map(Envelope.decode, sent)],
        }
    return json.dumps(state, default=str, sort_keys=True).replace(case_id, "CASE")


async def test_a_case_changed_by_several_events_of_one_batch_ends_as_if_one_by_one(ctx, monkeypatch):
    consumer = bootstrap(ctx).consumers[0]
    run = uuid.uuid4().hex[:8]
    together, alone = f"together-{run}", f"alone-{run}"

    ids = iter([f"{together}-1", f"{together}-2", f"{alone}-1", f"{alone}-2"])
    monkeypatch.setattr(handlers, "new_id", lambda: next(ids))
    with statements(ctx.db.engine) as sent:
        assert await consumer.handle_batch(records(ctx, lifecycle(together)))
    for r in records(ctx, lifecycle(alone)):
        assert await consumer.handle(r)

    assert await snapshot(ctx, together) == await snapshot(ctx, alone)
    assert await consumer.store.parking.parked(consumer.name) == []
    # one load of the (absent) case, one save: each table written once or twice, whatever the events
    own = [s for s in sent if "dispatcher_inbox" not in s]
    assert len(own) <= 10, own


async def test_fifty_reports_then_fifty_claims_are_a_few_statements_each(ctx):
    consumer = bootstrap(ctx).consumers[0]
    run = uuid.uuid4().hex[:8]
    ids = [f"many-{run}-{n:02}" for n in range(50)]
    with statements(ctx.db.engine) as reporting:
        assert await consumer.handle_batch(records(ctx, [reported(c) for c in ids]))
    async with ctx.db.sessions() as s:
        tickets = {c: a for c, a in await s.execute(select(assignments.c.case_id, assignments.c.assignment_id))}
    claims = [TicketClaimed(case_id=c, ticket_id=tickets[c], unit_id="U-G11") for c in ids]
    with statements(ctx.db.engine) as claiming:
        assert await consumer.handle_batch(records(ctx, claims))

    # The inbox is the kernel's, a row per record; the dispatcher's own statements do not grow
    # with the batch: lock and load, then cases, assignments, timers, history and outbox.
    for sent, most in ((reporting, 6), (claiming, 8)):
        own = [s for s in sent if "dispatcher_inbox" not in s]
        assert len(own) <= most, "\n".join(own)
    async with ctx.db.sessions() as s:
        assert await s.scalar(select(func.count()).where(cases.c.case_id.in_(ids), cases.c.status == "claimed")) == 50
        assert await s.scalar(select(func.count()).where(history.c.case_id.in_(ids))) == 100


async def test_records_failing_in_a_batch_are_parked_alone_whether_in_a_step_or_in_the_save(ctx):
    consumer = bootstrap(ctx).consumers[0]
    run = uuid.uuid4().hex[:8]
    good, also_good = f"good-{run}", f"also-good-{run}"
    too_long = f"long-{run}-" + "x" * 80  # routed fine, refused by the database when saved
    batch = [
        reported(good),
        TicketClaimed(case_id=good, ticket_id="no-such-ticket", unit_id="U-G11"),  # the Router refuses it
        reported(too_long),
        reported(also_good),
    ]
    assert await consumer.handle_batch(records(ctx, batch))

    async with ctx.db.sessions() as s:
        routed = (await s.scalars(select(assignments.c.case_id).where(assignments.c.case_id.like(f"%{run}%")))).all()
    assert sorted(routed) == sorted([good, also_good])
    parked = {p.case_id: p.error for p in await consumer.store.parking.parked(consumer.name)}
    assert set(parked) == {good, too_long[:200]}
    assert "no-such-ticket" in parked[good] and "too long" in parked[too_long]


async def test_two_workers_fire_thousands_of_due_timers_each_once_in_due_order_per_case(ctx):
    clock: FrozenClock = ctx.clock
    router = Router(ctx.jurisdiction, ctx.policy)
    ids = await seed_cases(ctx.db, router, 2000, clock.now())
    clock.advance(timedelta(days=1))  # each case: its response warning, then its response limit, are due

    store = bootstrap(ctx).store
    a, b = TimerWorker(store, router, batch=1000), TimerWorker(store, router, batch=1000)
    fired = await asyncio.gather(a.fire_due(), b.fire_due())
    assert sum(fired) >= 4000 and all(n > 0 for n in fired), fired  # and the earlier tests' cases

    async with ctx.db.sessions() as s:
        rows = await s.execute(
            select(history.c.case_id, history.c.type).where(history.c.case_id.in_(ids)).order_by(history.c.id)
        )
        per_case: dict[str, list[str]] = defaultdict(list)
        for case_id, kind in rows:
            per_case[case_id].append(kind)
        left = await s.scalar(
            select(func.count()).where(timer_rows.c.case_id.in_(ids), timer_rows.c.due_at <= clock.now())
        )
    expected = ["case.sla_warning", "case.sla_breached", "case.escalated", "case.unassigned", "case.assigned"]
    assert Counter(tuple(kinds) for kinds in per_case.values()) == {tuple(expected): 2000}
    assert left == 0


async def test_a_transaction_of_timers_is_a_few_statements_for_hundreds_of_cases(ctx):
    clock: FrozenClock = ctx.clock
    clock.advance(-timedelta(days=300))  # before every other test's timers: only these fall due
    router = Router(ctx.jurisdiction, ctx.policy)
    await seed_cases(ctx.db, router, 250, clock.now())
    clock.advance(timedelta(days=1))
    worker = TimerWorker(bootstrap(ctx).store, router, per_transaction=250)
    with statements(ctx.db.engine) as sent:
        assert await worker.fire_due() == 500
    # lease, lock and load (3), save (cases, assignments twice, timers twice, history), outbox,
    # then a lease that finds nothing
    assert len(sent) <= 12, "\n".join(sent)


class Ticking:
    """A clock that runs at real speed from a moment before every other test's timers (the
    suite's start, wherever GRIDCALL_TEST_CLOCK_YEARS put it)."""

    def __init__(self) -> None:
        self.start, self.started = START - timedelta(days=730), time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.started)


async def test_an_idle_worker_wakes_when_the_next_timer_falls_due_not_at_its_next_poll(pg_settings):
    clock = Ticking()
    ctx = build_context(pg_settings, clock=clock)
    try:
        router = Router(ctx.jurisdiction, ctx.policy)
        # Reported years after the suite's start: its other clocks fall due long after this test.
        [case_id] = await seed_cases(ctx.db, router, 1, START + timedelta(days=3 * 365))
        due = clock.now() + timedelta(seconds=0.3)
        async with ctx.db.transaction() as s:
            await s.execute(
                update(timer_rows)
                .where(timer_rows.c.case_id == case_id, timer_rows.c.kind == "response_warning")
                .values(due_at=due)
            )
        worker = TimerWorker(bootstrap(ctx).store, router, interval=5)
        stop = Stop()
        running = asyncio.create_task(worker.run(stop))
        try:
            for _ in range(50):
                async with ctx.db.sessions() as s:
                    warned = await s.scalar(
                        select(history.c.at).where(history.c.case_id == case_id, history.c.type == "case.sla_warning")
                    )
                if warned is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
        assert warned is not None, "the warning did not fire within 2.5 s; the poll interval is 5 s"
        assert timedelta(0) <= warned - due < timedelta(seconds=1)
    finally:
        await ctx.db.dispose()


async def test_a_cases_location_is_kept_and_loaded_with_it(ctx):
    consumer = bootstrap(ctx).consumers[0]
    case_id = f"lift-{uuid.uuid4().hex[:8]}"
    in_compound = Location(lat=30.5025, lon=114.3125)  # CP-OSMANTHUS, managed by PM-GREEN, in grid G21
    event = CaseReported(
        case_id=case_id, category="lift_fault", description="stuck", location=in_compound, grid_id="G21"
    )
    assert await consumer.handle(records(ctx, [event])[0])
    async with ctx.db.sessions() as s:
        case = (await repository.load(s, [case_id], lock=False)).cases[case_id]
    assert (case.location, case.lead.unit_id) == (in_compound, "PM-GREEN")
