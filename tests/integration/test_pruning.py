"""Tables forget what is past their horizon, a batch at a time, on PostgreSQL. The inbox: after
a week of events with the clock moved a day at a time, it holds only its horizon's, and an event
redelivered inside the horizon still changes nothing. Outbound deliveries and notifications:
after eight days of them, the finished ones (delivered, failed for good, suppressed) past
GRIDCALL_DELIVERY_RETENTION_DAYS are gone, counted from when they finished; every dead or
waiting one stays whatever its age, with its notification; ops' listings and re-drive work on
what is left, and a message made again inside the retention is still refused by its key."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from departments import tables as departments_tables
from departments.adapters.usecases import AdapterOps
from departments.adapters.workers import CHANNEL
from departments.bootstrap import bootstrap as departments_bootstrap
from dispatcher import tables as dispatcher_tables
from dispatcher.bootstrap import bootstrap as dispatcher_bootstrap
from notifier import tables as notifier_tables
from notifier.bootstrap import bootstrap as notifier_bootstrap
from notifier.repository import notifications_of, token_hash
from notifier.usecases import unsubscribe_by_token
from services.delivery.ops import DeliveryOps, Filters
from services.delivery.sender import Outcome, Result
from services.delivery.tables import State
from services.delivery.worker import NO_RECEIPT, Lane, Worker, receipt
from services.district.events import CaseReported, Location
from services.messaging.bus import Record
from services.messaging.envelope import Envelope
from services.runtime.context import build_context
from services.runtime.metrics import Metrics
from services.storage.bulk import insert_new
from services.storage.pruning import BATCH, Horizon, Pruner
from tests.support.clock import START, frozen_clock
from tests.support.delivery import Scripted, insert, row

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


RETENTION = 4  # days: GRIDCALL_DELIVERY_RETENTION_DAYS in the test below
DAYS = 8
BULK = 300  # delivered webhook rows a day beside the worker's: more than a batch goes at once


async def test_eight_days_of_deliveries_leave_the_finished_ones_their_retention(pg_settings):
    clock = frozen_clock(START.replace(hour=0, minute=0, second=0, microsecond=0))
    settings = pg_settings.model_copy(update={"inbox_horizon_days": 3, "delivery_retention_days": RETENTION})
    ctx = build_context(settings, clock=clock)
    # what each service's pruner deletes beside its inbox (services/runtime/app.py)
    horizons = [*notifier_bootstrap(ctx).horizons, *departments_bootstrap(ctx).horizons]
    webhooks, told, sent = departments_tables.deliveries, notifier_tables.notifications, notifier_tables.deliveries
    tag = uuid.uuid4().hex[:6]
    webhook = Scripted(CHANNEL)
    sender = Worker(
        ctx.db, clock, webhooks, {CHANNEL: webhook}, service="test", schedule=[0.0], receipt_wait=600, metrics=Metrics()
    )
    try:
        for day in range(DAYS):
            now = clock.now()
            to_unit = {"channel": CHANNEL, "to": "U-D1", "case_id": f"{tag}-{day}"}
            webhook.script |= {f"{tag}-perm-{day}": [PERMANENT], f"{tag}-dead-{day}": [UNAVAILABLE]}
            made = [
                row(f"{tag}-ok-{day}", now, **to_unit),
                row(f"{tag}-perm-{day}", now, **to_unit),
                row(f"{tag}-dead-{day}", now, sequence=f"{tag}/{day}", **to_unit),
                row(f"{tag}-held-{day}", now, sequence=f"{tag}/{day}", **to_unit),  # behind the dead one
                row(f"{tag}-later-{day}", now + timedelta(days=30), **to_unit),  # not due for a month
            ]
            made += [
                row(f"{tag}-bulk-{day}-{n}", now, state=State.DELIVERED, delivered_at=now, **to_unit)
                for n in range(BULK)
            ]
            await insert(ctx.db, webhooks, [_full(d) for d in made])
            while await sender.deliver_due(Lane(CHANNEL)):
                pass
            await _tell(ctx, tag, day)
            if day == 5:  # the receipt for day 0's SMS: delivered now, kept the retention from now
                assert await receipt(ctx.db, sent, clock, [0.0], msg_id=f"{tag}-late-sms", delivered=True)
            if day == 6:  # the follower stops the messages: day 0's dead SMS is suppressed now
                assert await unsubscribe_by_token(ctx.db, f"{tag}-0", f"token-{tag}", now) == f"{tag}-0"
            clock.advance(timedelta(days=1))

        # Now is the start of day 8: what finished on days 4 to 7 is inside the retention.
        pruner = Pruner("test", ctx.db, clock, horizons)
        gone = range(DAYS - RETENTION)
        assert await pruner.prune_once() == {
            sent.name: 3 * len(gone),  # each day's told-sms, told-email and stuck-sms
            told.name: 2 * len(gone),  # each day's told and quiet: none of their deliveries is left
            webhooks.name: (BULK + 2) * len(gone),  # each day's ok, perm and bulk
        }
        assert (BULK + 2) * len(gone) > BATCH
        assert await pruner.prune_once() == {sent.name: 0, told.name: 0, webhooks.name: 0}

        kept = range(DAYS - RETENTION, DAYS)
        finished = {f"{tag}-{what}-{d}" for what in ("ok", "perm") for d in kept}
        finished |= {f"{tag}-bulk-{d}-{n}" for d in kept for n in range(BULK)}
        unfinished = {f"{tag}-{what}-{d}" for what in ("dead", "held", "later") for d in range(DAYS)}
        assert await _msg_ids(ctx, webhooks) == finished | unfinished
        assert await _msg_ids(ctx, sent) == (
            {f"{tag}-{what}-{d}" for what in ("told-sms", "told-email", "stuck-sms") for d in kept}
            | {f"{tag}-{what}-{d}" for what in ("stuck-email", "waiting-sms") for d in range(DAYS)}
            | {f"{tag}-late-sms", f"{tag}-stopped-sms"}
        )
        async with ctx.db.reading() as conn:
            keys = set(await conn.scalars(select(told.c.key)))
        assert keys == {f"{tag}-{what}-{d}" for what in ("told", "quiet") for d in kept} | {
            f"{tag}-{what}-{d}" for what in ("stuck", "waiting") for d in range(DAYS)
        } | {f"{tag}-late", f"{tag}-stopped"}

        # What ops and residents read still works on what is left.
        ops = DeliveryOps(ctx.db, clock, webhooks)
        listed, after = [], None
        while True:
            page = await ops.listing(Filters(channel=CHANNEL), after=after, limit=400)
            listed += [r.msg_id for r in page.rows]
            if page.next is None:
                break
            after = page.next
        assert sorted(listed) == sorted(finished | unfinished)
        dead = await AdapterOps(ctx.db, clock, ctx.jurisdiction).deliveries("dead", unit="U-D1")
        assert {d.msg_id for d in dead.deliveries} == {f"{tag}-dead-{d}" for d in range(DAYS)} | {
            f"{tag}-perm-{d}" for d in kept
        }
        again = await ops.redrive(next(d.id for d in dead.deliveries if d.msg_id == f"{tag}-perm-{DAYS - 1}"))
        assert (again.state, again.next_attempt_at) == (State.CREATED, clock.now())
        async with ctx.db.sessions() as s:
            case_0 = await notifications_of(s, f"{tag}-0")
        assert [(n["key"], [d["state"] for d in n["deliveries"]]) for n in case_0] == [
            (f"{tag}-stuck-0", ["dead"]),
            (f"{tag}-waiting-0", ["temporary-failure"]),
            (f"{tag}-late", ["delivered"]),
            (f"{tag}-stopped", ["suppressed"]),
        ]

        # A message made again inside the retention (its event redelivered) is still refused by its key.
        async with ctx.db.transaction() as s:
            assert (
                await insert_new(s, webhooks, [row(f"{tag}-ok-{DAYS - RETENTION}", clock.now(), **to_unit)], "msg_id")
                == set()
            )
            assert (
                await insert_new(s, told, [_notification(f"{tag}-told-{DAYS - RETENTION}", "x", clock.now())], "key")
                == set()
            )
    finally:
        await ctx.db.dispose()


PERMANENT = Result(Outcome.PERMANENT, "HTTP 400", 400)
UNAVAILABLE = Result(Outcome.TEMPORARY, "HTTP 503", 503)


async def _tell(ctx, tag: str, day: int) -> None:
    """A day of the notifier's notifications, each with its deliveries as the worker leaves them:
    one told (an SMS delivered, an email suppressed as a duplicate), one stuck (its email dead),
    one waiting for its next attempt, one quiet (no channel reaches its recipient). On day 0
    also an SMS dead for want of its receipt, and one to a follower, dead, that they stop later."""
    now, case_id = ctx.clock.now(), f"{tag}-{day}"
    sms = {"to": "+8613800000001", "case_id": case_id}
    email = {"channel": "email", "to": "someone@example.cn", "case_id": case_id}
    notifications = [
        _notification(f"{tag}-{what}-{day}", case_id, now) for what in ("stuck", "waiting", "told", "quiet")
    ]
    deliveries = [
        row(f"{tag}-told-sms-{day}", now, ref=f"{tag}-told-{day}", state=State.DELIVERED, delivered_at=now, **sms),
        row(f"{tag}-told-email-{day}", now, ref=f"{tag}-told-{day}", state=State.SUPPRESSED, **email),
        row(f"{tag}-stuck-sms-{day}", now, ref=f"{tag}-stuck-{day}", state=State.DELIVERED, delivered_at=now, **sms),
        row(f"{tag}-stuck-email-{day}", now, ref=f"{tag}-stuck-{day}", state=State.DEAD, **email),
        row(
            f"{tag}-waiting-sms-{day}",
            now + timedelta(hours=2),
            ref=f"{tag}-waiting-{day}",
            state=State.TEMPORARY_FAILURE,
            **sms,
        ),
    ]
    if day == 0:
        notifications += [_notification(f"{tag}-late", case_id, now), _notification(f"{tag}-stopped", case_id, now)]
        deliveries += [
            row(f"{tag}-late-sms", now, ref=f"{tag}-late", state=State.DEAD, reason=NO_RECEIPT, **sms),
            row(
                f"{tag}-stopped-sms",
                now,
                ref=f"{tag}-stopped",
                state=State.DEAD,
                sequence=f"{case_id}/follower:{tag}-r/sms",
                **sms,
            ),
        ]
        follower = {
            "report_id": f"{tag}-r",
            "case_id": case_id,
            "phone": "+8613800000001",
            "language": "zh-CN",
            "token_hash": token_hash(f"token-{tag}"),
            "created_at": now,
        }
        await insert(ctx.db, notifier_tables.followers, [follower])
    await insert(ctx.db, notifier_tables.notifications, notifications)
    await insert(ctx.db, notifier_tables.deliveries, [_full(d) for d in deliveries])


def _full(delivery: dict) -> dict:
    """A row with every column a row of the insert has (one statement inserts them all)."""
    return {"delivered_at": None, "reason": None, "ref": None, **delivery}


def _notification(key: str, case_id: str, at) -> dict:
    return {
        "key": key,
        "case_id": case_id,
        "audience": "resident",
        "recipient": "follower:r",
        "kind": "case.resolved",
        "language": "zh-CN",
        "subject": "已办结",
        "message": "您反映的问题已办结",
        "created_at": at,
    }


async def _msg_ids(ctx, table) -> set[str]:
    async with ctx.db.reading() as conn:
        return set(await conn.scalars(select(table.c.msg_id)))
