"""The kernel's delivery worker on PostgreSQL: the SQLite suite's behaviours once more (claims
with `FOR UPDATE SKIP LOCKED`, leases, order, receipts, ops), and two workers on their own
connections racing over the same rows, which never send one row twice nor a sequence's rows
out of order."""

import asyncio
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql

from services.delivery.tables import State
from services.delivery.worker import Lane
from services.runtime.lifecycle import Stop
from services.storage.db import Database
from tests.support.clock import frozen_clock
from tests.support.delivery import Scripted, deliveries_of_its_own, insert, row, states
from tests.support.waiting import eventually
from tests.unit.test_delivery_worker import (  # noqa: F401  the same tests, on this module's `db`
    FAILED,
    clock,
    table,
    test_a_held_lane_sends_nothing,
    test_a_permanent_failure_does_not_hold_its_sequence,
    test_a_receipt_before_the_worker_records_the_send_has_the_last_word,
    test_a_sender_that_raises_leaves_the_outcome_unknown,
    test_a_sequence_goes_out_in_order_and_a_dead_row_holds_it_until_redriven,
    test_a_worker_killed_mid_send_leaves_a_lease_that_runs_out,
    test_accepted_then_a_receipt_says_delivered,
    test_ambiguous_then_a_receipt_says_failed_and_it_is_sent_again,
    test_claimed_rows_are_leased_while_they_are_sent_and_a_second_worker_takes_none,
    test_each_lane_has_its_own_loop_and_a_hanging_one_holds_up_no_other,
    test_held_destinations_wait_and_gone_calls_the_hook,
    test_no_receipt_in_time,
    test_ops_list_a_page_at_a_time_count_and_redrive,
    test_the_gauges_count_rows_per_channel_and_state,
    test_the_schedule_then_dead_and_retry_after,
    worker,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(pg_url):
    database = Database(pg_url)
    yield database
    await database.dispose()


async def test_two_workers_racing_never_send_one_row_twice_nor_out_of_order(pg_url):
    first_db, second_db = Database(pg_url), Database(pg_url)
    try:
        table = await deliveries_of_its_own(first_db)
        clock = frozen_clock()
        tag = uuid.uuid4().hex[:6]
        rows = [row(f"{tag}-s{s}-{k}", clock.now(), sequence=f"{tag}/{s}") for k in range(3) for s in range(40)]
        rows += [row(f"{tag}-n{i}", clock.now()) for i in range(80)]
        failing = {r["msg_id"]: [FAILED] for r in rows[::7]}  # tried again at once: the schedule is all zeros
        sender, other = Scripted(**failing), Scripted()
        other.script, other.sent = sender.script, sender.sent  # one receiver; `items`: what each worker sent
        await insert(first_db, table, rows)
        workers = []
        for d, s in ((first_db, sender), (second_db, other)):
            s.pause = 0.002
            workers.append(worker(d, clock, table, s, schedule=[0.0, 0.0, 0.0], batch=10, interval=0.01))
        stop = Stop()
        running = [asyncio.create_task(w.run(stop)) for w in workers]

        async def all_delivered():
            found = await states(first_db, table)
            return all(state == "delivered" for state, _ in found.values()) or None

        await eventually(all_delivered, timeout=60)
        stop.set()
        await asyncio.gather(*running)

        sends: dict[str, int] = defaultdict(int)
        for msg_id in sender.sent:
            sends[msg_id] += 1
        assert {m: n for m, n in sends.items() if n != 1 + (m in failing)} == {}, "sent more often than tried"
        assert set(sends) == {r["msg_id"] for r in rows}
        for s in range(40):  # a row of a sequence is first sent after the one before it was delivered
            firsts = [sender.sent.index(f"{tag}-s{s}-{k}") for k in range(3)]
            lasts = [len(sender.sent) - 1 - sender.sent[::-1].index(f"{tag}-s{s}-{k}") for k in range(3)]
            assert lasts[0] < firsts[1] and lasts[1] < firsts[2], f"sequence {s} out of order"
        assert sender.items and other.items, "one worker took everything: no race"
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_the_claim_reads_the_rows_still_to_send_not_every_row_sent_before(db, clock, table):  # noqa: F811
    """After a burst a deliveries table is mostly delivered rows, and its statistics may be from
    the moment it was mostly waiting ones. The claim must still read only the few waiting rows
    (the partial index ix_<prefix>_deliveries_waiting), not walk the primary key past the rest."""
    tag = uuid.uuid4().hex[:6]
    await insert(db, table, [row(f"{tag}-{i}", clock.now(), sequence=f"{tag}/{i % 500}") for i in range(3000)])
    async with db.transaction() as s:
        await s.execute(text(f"ANALYZE {table.name}"))  # statistics that say every row is waiting
        await s.execute(update(table).where(table.c.id <= 2950).values(state="delivered"))
    due = worker(db, clock, table, Scripted())._due(Lane("sms"), {State.CREATED, State.TEMPORARY_FAILURE}, set())
    query = due.element.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with db.transaction() as s:
        plan = (await s.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}"))).scalar_one()

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    read = list(nodes(plan[0]["Plan"]))
    assert f"ix_{table.name}_waiting" in {n.get("Index Name") for n in read}
    assert sum(n.get("Rows Removed by Filter", 0) for n in read) < 100, "the claim read rows already sent"
    assert not any(n["Node Type"] == "Seq Scan" for n in read)
