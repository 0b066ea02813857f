"""The kernel's one delivery worker (services/delivery/worker.py) and its ops, on SQLite with a
scripted Sender: claims and leases, a worker killed mid-send, order within a sequence, the
schedule to dead, Retry-After, receipts after an accepted or ambiguous send, no receipt, held
destinations and gone, a lane that hangs, re-drive and paging. tests/integration/
test_delivery_worker.py runs the same on PostgreSQL, with two workers racing."""

import asyncio
import random
from datetime import timedelta

import pytest

from services.delivery.ops import DeliveryOps, Filters
from services.delivery.sender import Outcome, Result
from services.delivery.tables import State
from services.delivery.worker import NO_RECEIPT, Lane, Worker, receipt
from services.district.errors import Conflict, NotFound
from services.runtime.lifecycle import Stop
from services.runtime.metrics import Metrics
from services.storage.db import Database
from tests.support.clock import frozen_clock
from tests.support.delivery import Scripted, deliveries_of_its_own, insert, row, rows_of, states
from tests.support.waiting import eventually

SCHEDULE = [0.0, 5.0, 300.0]
FAILED = Result(Outcome.TEMPORARY, "HTTP 503", 503)
SMS = Lane("sms")


@pytest.fixture
async def db(embedded_settings):
    database = Database(embedded_settings.db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def table(db):
    return await deliveries_of_its_own(db)


@pytest.fixture
def clock():
    return frozen_clock()


def worker(db, clock, table, *senders, **options) -> Worker:
    options = {"schedule": SCHEDULE, "receipt_wait": 600, "lease": 30, "rng": random.Random(3), **options}
    return Worker(db, clock, table, {s.channel: s for s in senders}, service="test", metrics=Metrics(), **options)


def counted(w: Worker, outcome: str, channel: str = "sms") -> float:
    labels = {"service": "test", "channel": channel, "outcome": outcome}
    return w.metrics.registry.get_sample_value("gridcall_deliveries_total", labels) or 0


async def test_claimed_rows_are_leased_while_they_are_sent_and_a_second_worker_takes_none(db, clock, table):
    sms = Scripted()
    sms.gate = asyncio.Event()
    await insert(db, table, [row(f"m{i}", clock.now()) for i in range(3)])
    first, second = worker(db, clock, table, sms), worker(db, clock, table, sms)
    sending = asyncio.create_task(first.deliver_due(SMS))
    await eventually(lambda: asyncio.sleep(0, result=len(sms.sent) == 3 or None))
    rows = await rows_of(db, table)  # committed before the sends began
    assert {(r.state, r.next_attempt_at) for r in rows.values()} == {("sending", clock.now() + timedelta(seconds=30))}
    assert await second.deliver_due(SMS) == 0
    sms.gate.set()
    assert await sending == 3
    rows = await rows_of(db, table)
    assert {(r.state, r.attempts, r.last_status, r.delivered_at) for r in rows.values()} == {
        ("delivered", 1, 200, clock.now())
    }
    assert sms.sent == ["m0", "m1", "m2"] and counted(first, "delivered") == 3
    item = sms.items[0]
    assert (item.channel, item.destination, item.case_id, item.kind, item.attempts) == (
        "sms",
        "+8613800000001",
        "C1",
        "case.resolved",
        0,
    )


@pytest.mark.parametrize("resend_unknown", [True, False])
async def test_a_worker_killed_mid_send_leaves_a_lease_that_runs_out(db, clock, table, resend_unknown):
    sender = Scripted(resend_unknown=resend_unknown)
    sender.gate = asyncio.Event()
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sender)
    killed = asyncio.create_task(w.deliver_due(SMS))
    await eventually(lambda: asyncio.sleep(0, result=sender.sent or None))
    killed.cancel()
    await asyncio.gather(killed, return_exceptions=True)
    sender.gate = None
    assert await w.deliver_due(SMS) == 0  # leased: nobody sends it meanwhile
    clock.advance(timedelta(seconds=30))
    assert await w.deliver_due(SMS) == 1
    if resend_unknown:  # the receiver deduplicates: sent again
        assert sender.sent == ["m1", "m1"]
        assert await states(db, table) == {"m1": ("delivered", 1)}
    else:  # it may have arrived: never sent again blindly
        assert sender.sent == ["m1"]
        [dead] = (await rows_of(db, table)).values()
        assert (dead.state, dead.reason) == ("dead", NO_RECEIPT)
        assert counted(w, "unknown") == 1


async def test_a_sequence_goes_out_in_order_and_a_dead_row_holds_it_until_redriven(db, clock, table):
    sms = Scripted(a1=[FAILED, FAILED, FAILED])
    await insert(
        db,
        table,
        [
            row("a1", clock.now(), sequence="A"),
            row("a2", clock.now(), sequence="A"),
            row("b1", clock.now(), sequence="B"),
            row("n1", clock.now()),
            row("n2", clock.now()),
        ],
    )
    w = worker(db, clock, table, sms)
    assert await w.deliver_due(SMS) == 4  # a2 waits for a1
    assert sms.sent == ["a1", "b1", "n1", "n2"]
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        await w.deliver_due(SMS)
    assert sms.sent.count("a1") == 3 and "a2" not in sms.sent
    assert (await states(db, table))["a1"] == ("dead", 3)
    assert (await states(db, table))["a2"] == ("created", 0)  # behind a dead one: it waits

    ops = DeliveryOps(db, clock, table)
    [dead] = (await ops.listing(Filters(states={State.DEAD}))).rows
    await ops.redrive(dead.id)
    await w.deliver_due(SMS)
    await w.deliver_due(SMS)
    assert sms.sent[-2:] == ["a1", "a2"]
    assert (await states(db, table))["a2"] == ("delivered", 1)


async def test_a_permanent_failure_does_not_hold_its_sequence(db, clock, table):
    sms = Scripted(a1=[Result(Outcome.PERMANENT, "no such number", 400)])
    await insert(db, table, [row("a1", clock.now(), sequence="A"), row("a2", clock.now(), sequence="A")])
    w = worker(db, clock, table, sms)
    await w.deliver_due(SMS)
    await w.deliver_due(SMS)
    assert sms.sent == ["a1", "a2"]
    assert await states(db, table) == {"a1": ("permanent-failure", 1), "a2": ("delivered", 1)}
    assert (await rows_of(db, table))["a1"].reason == "no such number" and counted(w, "permanent") == 1


async def test_the_schedule_then_dead_and_retry_after(db, clock, table):
    busy = Result(Outcome.TEMPORARY, "HTTP 429", 429, retry_after=120)
    sms = Scripted(m1=[FAILED, FAILED, FAILED], m2=[busy])
    await insert(db, table, [row("m1", clock.now()), row("m2", clock.now())])
    w = worker(db, clock, table, sms)
    await w.deliver_due(SMS)
    rows = await rows_of(db, table)
    assert rows["m2"].next_attempt_at == clock.now() + timedelta(seconds=120)
    assert rows["m2"].state == "temporary-failure" and rows["m2"].last_status == 429
    assert 4 <= (rows["m1"].next_attempt_at - clock.now()).total_seconds() <= 6  # 5 s, ±20%
    clock.advance(timedelta(seconds=119))
    assert await w.deliver_due(SMS) == 1  # m1, again; m2 not yet
    clock.advance(timedelta(seconds=1))
    assert await w.deliver_due(SMS) == 1  # m2
    clock.advance(timedelta(minutes=10))
    await w.deliver_due(SMS)
    rows = await rows_of(db, table)
    assert (rows["m1"].state, rows["m1"].attempts, rows["m1"].reason, rows["m1"].last_status) == (
        "dead",
        3,
        "HTTP 503",
        503,
    )
    assert (counted(w, "retry"), counted(w, "dead"), counted(w, "delivered")) == (3, 1, 1)


async def test_accepted_then_a_receipt_says_delivered(db, clock, table):
    sms = Scripted(m1=[Result(Outcome.ACCEPTED, provider_ref="biz-1")])
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sms)
    await w.deliver_due(SMS)
    [waiting] = (await rows_of(db, table)).values()
    assert (waiting.state, waiting.provider_ref, waiting.attempts) == ("sending", "biz-1", 1)
    assert waiting.next_attempt_at == clock.now() + timedelta(seconds=600)
    assert await w.deliver_due(SMS) == 0 and counted(w, "accepted") == 1
    clock.advance(timedelta(seconds=5))
    assert await receipt(db, table, clock, SCHEDULE, provider_ref="biz-1", delivered=True)
    assert await receipt(db, table, clock, SCHEDULE, provider_ref="biz-1", delivered=True)  # again: no change
    assert not await receipt(db, table, clock, SCHEDULE, provider_ref="biz-2", delivered=True)
    [done] = (await rows_of(db, table)).values()
    assert (done.state, done.delivered_at, done.reason) == ("delivered", clock.now(), None)  # when the receipt came
    with pytest.raises(ValueError):
        await receipt(db, table, clock, SCHEDULE, delivered=True)


async def test_ambiguous_then_a_receipt_says_failed_and_it_is_sent_again(db, clock, table):
    sms = Scripted(m1=[Result(Outcome.AMBIGUOUS, "no answer within 10s")])
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sms)
    await w.deliver_due(SMS)
    [waiting] = (await rows_of(db, table)).values()
    assert waiting.state == "sending" and "no answer within 10s" in waiting.reason and "receipt" in waiting.reason
    assert counted(w, "ambiguous") == 1
    assert await receipt(db, table, clock, SCHEDULE, msg_id="m1", delivered=False, error="handset unreachable")
    [failed] = (await rows_of(db, table)).values()
    assert (failed.state, failed.reason) == ("temporary-failure", "handset unreachable")
    assert failed.next_attempt_at > clock.now()  # on the schedule, like any temporary failure
    assert await w.deliver_due(SMS) == 0
    clock.advance(timedelta(seconds=SCHEDULE[1] * 2))
    assert await w.deliver_due(SMS) == 1  # it did not arrive: sending it again is safe
    assert sms.sent == ["m1", "m1"] and await states(db, table) == {"m1": ("delivered", 2)}


async def test_failure_receipts_end_in_dead_after_the_schedule_and_a_stale_one_changes_nothing(db, clock, table):
    sms = Scripted(m1=[Result(Outcome.ACCEPTED, provider_ref=f"biz-{n}") for n in range(1, 5)])
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sms)
    for attempt in range(1, len(SCHEDULE) + 1):
        assert await w.deliver_due(SMS) == 1
        if attempt > 1:  # the first attempt's failure, reported again, matches nothing: this attempt waits on
            assert not await receipt(db, table, clock, SCHEDULE, msg_id="m1", provider_ref="biz-1", delivered=False)
            assert (await states(db, table))["m1"][0] == "sending"
        assert await receipt(db, table, clock, SCHEDULE, msg_id="m1", provider_ref=f"biz-{attempt}", delivered=False)
        clock.advance(timedelta(seconds=SCHEDULE[-1] * 2))
    assert await states(db, table) == {"m1": ("dead", len(SCHEDULE))}
    assert sms.sent == ["m1"] * len(SCHEDULE)


@pytest.mark.parametrize("resend_unknown", [True, False])
async def test_no_receipt_in_time(db, clock, table, resend_unknown):
    sender = Scripted(resend_unknown=resend_unknown, m1=[Result(Outcome.ACCEPTED, provider_ref="biz-1")])
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sender)
    await w.deliver_due(SMS)
    clock.advance(timedelta(seconds=599))
    assert await w.deliver_due(SMS) == 0
    clock.advance(timedelta(seconds=1))
    assert await w.deliver_due(SMS) == 1
    if resend_unknown:
        assert sender.sent == ["m1", "m1"] and await states(db, table) == {"m1": ("delivered", 2)}
        return
    assert sender.sent == ["m1"]
    [dead] = (await rows_of(db, table)).values()
    assert (dead.state, dead.reason, dead.attempts) == ("dead", NO_RECEIPT, 1)
    assert counted(w, "unknown") == 1
    assert await receipt(db, table, clock, SCHEDULE, provider_ref="biz-1", delivered=True)  # late, but it came
    assert await states(db, table) == {"m1": ("delivered", 1)}


async def test_a_receipt_before_the_worker_records_the_send_has_the_last_word(db, clock, table):
    sms = Scripted(m1=[Result(Outcome.ACCEPTED, provider_ref="biz-1")])
    sms.gate = asyncio.Event()
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sms)
    sending = asyncio.create_task(w.deliver_due(SMS))
    await eventually(lambda: asyncio.sleep(0, result=sms.sent or None))
    assert await receipt(db, table, clock, SCHEDULE, msg_id="m1", delivered=True)  # a fast provider
    sms.gate.set()
    await sending
    assert await states(db, table) == {"m1": ("delivered", 0)}


async def test_held_destinations_wait_and_gone_calls_the_hook(db, clock, table):
    off = {"+8613800000002"}
    told: list[tuple[str, object]] = []

    async def held(session):
        return off

    async def on_gone(session, destination, now):
        told.append((destination, now))
        off.add(destination)

    sms = Scripted(g1=[Result(Outcome.GONE, "unsubscribed", 410)])
    await insert(
        db,
        table,
        [
            row("h1", clock.now(), to="+8613800000002"),
            row("g1", clock.now(), to="+8613800000003"),
            row("g2", clock.now(), to="+8613800000003"),
            row("ok", clock.now()),
        ],
    )
    w = worker(db, clock, table, sms, held=held, on_gone=on_gone)
    assert await w.deliver_due(SMS) == 3
    assert sorted(sms.sent) == ["g1", "g2", "ok"] and told == [("+8613800000003", clock.now())]
    rows = await rows_of(db, table)
    assert (rows["g1"].state, rows["g1"].attempts, rows["g1"].reason) == ("created", 0, "unsubscribed")
    assert await w.deliver_due(SMS) == 0  # both held now
    off.clear()
    assert await w.deliver_due(SMS) == 2
    assert await states(db, table) == {m: ("delivered", 1) for m in ("h1", "g1", "g2", "ok")}
    assert counted(w, "gone") == 1


async def test_a_held_lane_sends_nothing(db, clock, table):
    async def held(session):
        return {"D-BUS"}

    hooks = Scripted("webhook", resend_unknown=True)
    await insert(db, table, [row("m1", clock.now(), channel="webhook", to="D-BUS")])
    w = worker(db, clock, table, hooks, held=held, lanes=[Lane("webhook", "D-BUS")])
    assert await w.deliver_due(Lane("webhook", "D-BUS")) == 0 and hooks.sent == []


async def test_a_sender_that_raises_leaves_the_outcome_unknown(db, clock, table):
    class Broken(Scripted):
        async def send(self, item):
            raise RuntimeError("a bug")

    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, Broken())
    assert await w.deliver_due(SMS) == 1
    [row_] = (await rows_of(db, table)).values()
    assert row_.state == "sending" and "the sender failed" in row_.reason and counted(w, "ambiguous") == 1


async def test_each_lane_has_its_own_loop_and_a_hanging_one_holds_up_no_other(db, clock, table):
    slow, fast = Scripted("webhook", resend_unknown=True), Scripted("email", resend_unknown=True)
    slow.gate = asyncio.Event()  # never set: that department never answers
    await insert(
        db,
        table,
        [row("w1", clock.now(), channel="webhook", to="D-POWER")]
        + [row(f"e{i}", clock.now(), channel="email", to="li@example.cn") for i in range(3)],
    )
    w = worker(db, clock, table, slow, fast, interval=0.01)
    stop = Stop()
    running = asyncio.create_task(w.run(stop))

    async def emailed():
        return (await states(db, table))["e2"] == ("delivered", 1) or None

    await eventually(emailed, timeout=10)
    assert slow.sent == ["w1"]
    stop.set()
    slow.gate.set()
    await asyncio.wait_for(running, 10)
    assert (slow.closed, fast.closed) == (1, 1)


async def test_ops_list_a_page_at_a_time_count_and_redrive(db, clock, table):
    ops = DeliveryOps(db, clock, table)
    await insert(
        db,
        table,
        [row(f"m{i}", clock.now(), case_id=f"C{i % 2}", to=f"+86138000000{i:02}") for i in range(7)]
        + [row("d1", clock.now(), case_id="C9", state=State.DEAD, attempts=3, reason="HTTP 503")]
        + [row("p1", clock.now(), case_id="C9", channel="email", state=State.PERMANENT_FAILURE, attempts=1)],
    )
    pages, after = [], None
    while True:
        page = await ops.listing(Filters(channel="sms"), after=after, limit=3)
        pages.append([r.msg_id for r in page.rows])
        if page.next is None:
            break
        after = page.next
    assert pages == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6", "d1"]]
    assert [r.msg_id for r in (await ops.listing(Filters(case_id="C1"))).rows] == ["m1", "m3", "m5"]
    assert [r.msg_id for r in (await ops.listing(Filters(destination="+8613800000004"))).rows] == ["m4"]
    assert (await ops.listing(limit=9)).next is None
    assert await ops.counts() == {("sms", "created"): 7, ("sms", "dead"): 1, ("email", "permanent-failure"): 1}

    rows = await rows_of(db, table)
    with pytest.raises(NotFound):
        await ops.redrive(10**6)
    with pytest.raises(Conflict):
        await ops.redrive(rows["m0"].id)
    again = await ops.redrive(rows["d1"].id)
    assert (again.state, again.attempts, again.next_attempt_at) == ("created", 0, clock.now())
    assert await ops.redrive_all(Filters(channel="sms")) == 0
    assert await ops.redrive_all() == 1  # p1
    assert await ops.redrive_all(Filters(states={State.CREATED})) == 0


async def test_the_gauges_count_rows_per_channel_and_state(db, clock, table):
    await insert(
        db,
        table,
        [row("m1", clock.now()), row("m2", clock.now(), state=State.DEAD), row("m3", clock.now(), state="delivered")],
    )
    w = worker(db, clock, table, Scripted())
    await w.gauges()

    def gauge(state: str) -> float | None:
        labels = {"service": "test", "channel": "sms", "state": state}
        return w.metrics.registry.get_sample_value("gridcall_deliveries_in_state", labels)

    assert (gauge("created"), gauge("dead"), gauge("sending"), gauge("delivered")) == (1, 1, 0, None)


async def test_gone_where_nothing_can_switch_the_destination_off_fails_for_good_instead_of_looping(db, clock, table):
    sms = Scripted(m1=[Result(Outcome.GONE, "HTTP 410", 410)])
    await insert(db, table, [row("m1", clock.now())])
    w = worker(db, clock, table, sms)  # no on_gone hook
    assert await w.deliver_due(SMS) == 1
    assert await w.deliver_due(SMS) == 0  # not sent again at once
    [done] = (await rows_of(db, table)).values()
    assert (done.state, done.last_status) == ("permanent-failure", 410) and "stop" in done.reason
    assert sms.sent == ["m1"]
