"""The one delivery worker: sends a service's due deliveries through their channels' senders
after the transactions that wrote them committed, at least once, in order per sequence.

It runs a loop per lane (a channel, or a channel and one destination: a department's system),
so a slow or hanging receiver holds up only its own lane. A round claims the lane's due rows
(created or temporary-failure whose time came, or sending whose lease or receipt wait ran
out) that are the earliest unfinished of their sequence, by setting them `sending` with a
lease, in a short committed transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas
split the work and never take one row twice; SQLite's writers queue on its one lock). A lease
rather than a row lock held while sending, because on SQLite that lock would be the whole
file's. It then sends them concurrently and records the outcomes as they come in (every
`RECORD_EVERY` seconds, one transaction for what finished meanwhile).

A row whose lease ran out (a worker died mid-send) or whose receipt never came is sent again
only by a sender whose receivers deduplicate by msg_id (`Sender.resend_unknown`); for any
other it is dead, as unknown: it may have arrived, and a second SMS is not harmless."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Table, exists, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.delivery import retries
from services.delivery.ops import DeliveryOps, Filters
from services.delivery.sender import Item, Outcome, Result, Sender
from services.delivery.tables import UNFINISHED, State, waiting
from services.district.clock import Clock
from services.district.text import printable
from services.runtime.lifecycle import Stop
from services.runtime.metrics import Metrics
from services.runtime.retry import Stopped, always, describe, retry
from services.storage.bulk import among, update_rows
from services.storage.db import Database

log = logging.getLogger(__name__)

NO_RECEIPT = "no receipt after an ambiguous send: not sent again blindly (it may have arrived)"
# The states a gauge shows: delivered and suppressed rows only ever grow, and counting them would read them all.
GAUGED = sorted(set(State) - {State.DELIVERED, State.SUPPRESSED})

# Seconds between writes of a round's outcomes while its sends finish: the longer, the fewer
# statements; the shorter, the fewer messages a crash leaves sent but not recorded (sent again
# after the lease by a sender whose receivers deduplicate; dead as unknown for the others).
RECORD_EVERY = 0.25

Held = Callable[[AsyncSession], Awaitable[Collection[str]]]
OnGone = Callable[[AsyncSession, str, datetime], Awaitable[None]]


@dataclass(frozen=True)
class Failed:
    """A delivery that failed for good in this round (dead, or a permanent failure), and why."""

    row: Row[Any]
    state: State
    reason: str | None


OnFailed = Callable[[AsyncSession, Sequence[Failed], datetime], Awaitable[None]]


@dataclass(frozen=True)
class Lane:
    """The deliveries one loop sends: a channel's, or only those to one destination."""

    channel: str
    destination: str | None = None

    def __str__(self) -> str:
        return self.channel if self.destination is None else f"{self.channel} to {self.destination}"


class Worker:
    """Sends `table`'s deliveries through `senders` (by channel). `lanes`: one per channel unless
    given. `lease`: seconds a claimed row stays this worker's; longer than the slowest send, or
    another worker takes it over while it is on its way. `held(session)`: destinations whose
    deliveries wait for now (a unit whose system switched its adapter off), asked on every
    claim. `on_gone(session, destination, now)`: called in the transaction that records a
    destination's answer `gone` (switch it off, so that `held` holds it)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        table: Table,
        senders: Mapping[str, Sender],
        *,
        service: str,
        schedule: Sequence[float],
        receipt_wait: float,
        lanes: Sequence[Lane] | None = None,
        lease: float = 120.0,
        batch: int = 50,
        interval: float = 0.2,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        held: Held | None = None,
        on_gone: OnGone | None = None,
        on_failed: OnFailed | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.table = table
        self.senders = dict(senders)
        self.service = service
        self.schedule = list(schedule)
        self.receipt_wait = timedelta(seconds=receipt_wait)
        self.lanes = list(lanes) if lanes is not None else [Lane(channel) for channel in sorted(self.senders)]
        self.lease = timedelta(seconds=lease)  # longer than the slowest send (every step's timeout) and some
        self.batch = batch
        self.interval = interval
        self.rng = rng or random.Random()
        self.metrics = metrics or Metrics()
        self.held = held
        self.on_gone = on_gone
        self.on_failed = on_failed

    async def run(self, stop: Stop) -> None:
        """One loop per lane, side by side, until `stop`; then the senders are closed. (A lane's
        failures are retried inside its loop: this ends only when asked to, or cancelled.)"""
        try:
            await asyncio.gather(*(self._loop(lane, stop) for lane in self.lanes))
        finally:
            await self.close()

    async def close(self) -> None:
        for sender in self.senders.values():
            await sender.close()

    async def _loop(self, lane: Lane, stop: Stop) -> None:
        while not stop:
            try:
                done = await retry(
                    partial(self.deliver_due, lane), what=f"deliveries: {lane}", stop=stop, retry_on=always
                )
            except Stopped:
                return
            if done == 0:
                await stop.sleep(self.interval)

    async def deliver_due(self, lane: Lane) -> int:
        """Send the lane's due deliveries once; how many rows were sent or settled."""
        sender = self.senders[lane.channel]
        lease_until = self.clock.now() + self.lease
        claimed, unknown = await self._claim(lane, sender, lease_until)
        if unknown:
            self.metrics.tally(self.metrics.deliveries, [(self.service, lane.channel, "unknown")] * unknown)
        if not claimed:
            return unknown
        sends = [(asyncio.create_task(self._send(sender, row)), row) for row in claimed]
        waiting = {task for task, _ in sends}
        try:
            while waiting:  # outcomes are written as sends finish: a crash leaves few sent but unrecorded
                done, waiting = await asyncio.wait(waiting, timeout=RECORD_EVERY)
                finished = [(task, row) for task, row in sends if task in done]
                if finished:
                    rows = [row for _, row in finished]
                    await self._record(lane, rows, [task.result() for task, _ in finished], lease_until)
        finally:
            for task in waiting:
                task.cancel()
        return len(claimed) + unknown

    def _due(self, lane: Lane, states: Collection[State], held: Collection[str]) -> Any:
        """The ids of the lane's due rows in `states` that are the earliest unfinished of their
        sequence (a row without one waits for nothing), locked, skipping those others hold."""
        t, now = self.table, self.clock.now()
        earlier = t.alias("earlier")
        query = select(t.c.id).where(
            t.c.channel == lane.channel,
            waiting(t.c.state, states),
            t.c.next_attempt_at <= now,
            ~exists().where(
                earlier.c.sequence == t.c.sequence,  # NULL = NULL is not true: no sequence, no wait
                earlier.c.id < t.c.id,
                earlier.c.state.in_(sorted(UNFINISHED)),
            ),
        )
        if lane.destination is not None:
            query = query.where(t.c.destination == lane.destination)
        if held:
            query = query.where(t.c.destination.not_in(sorted(held)))
        return (
            query.order_by(t.c.next_attempt_at, t.c.id)
            .limit(self.batch)
            .with_for_update(of=t, skip_locked=True)
            .scalar_subquery()
        )

    async def _claim(self, lane: Lane, sender: Sender, lease_until: datetime) -> tuple[list[Row[Any]], int]:
        """The rows this round sends, now `sending` and leased until `lease_until`; and how many
        rows, of a sender that must not send blindly again, were found with their lease or
        receipt wait run out, and made dead."""
        t = self.table
        states = {State.CREATED, State.TEMPORARY_FAILURE}
        unknown = 0
        async with self.db.transaction() as s:
            held = set(await self.held(s)) if self.held is not None else set()
            if lane.destination is not None and lane.destination in held:
                return [], 0
            if sender.resend_unknown:
                states.add(State.SENDING)
            else:
                gave_up = (
                    await s.execute(
                        update(t)
                        .where(t.c.id.in_(self._due(lane, {State.SENDING}, held)))
                        .values(state=State.DEAD, reason=NO_RECEIPT)
                        .returning(*(t.c[name] for name in ITEM))
                    )
                ).all()
                for row in gave_up:
                    unknown += 1
                    log.warning("delivery %s (%s, %s) dead: %s", row.id, lane, row.msg_id, NO_RECEIPT)
                if gave_up and self.on_failed is not None:
                    await self.on_failed(s, [Failed(row, State.DEAD, NO_RECEIPT) for row in gave_up], self.clock.now())
            claimed = await s.execute(
                update(t)
                .where(t.c.id.in_(self._due(lane, states, held)))
                # a new attempt, with a provider id of its own: a late receipt for the last one matches nothing
                .values(state=State.SENDING, next_attempt_at=lease_until, provider_ref=None)
                .returning(*(t.c[name] for name in ITEM))
            )
            return sorted(claimed.all(), key=lambda r: r.id), unknown

    async def _send(self, sender: Sender, row: Row[Any]) -> Result:
        try:
            return await sender.send(Item(**{name: getattr(row, name) for name in ITEM}))
        except Exception as exc:  # a sender's bug: whether it went out is unknown
            log.exception("delivery %s (%s): the sender failed", row.id, sender.channel)
            return Result(Outcome.AMBIGUOUS, error=f"the sender failed: {describe(exc)}")

    async def _record(
        self, lane: Lane, rows: Sequence[Row[Any]], results: Sequence[Result], lease_until: datetime
    ) -> None:
        """Write each row's outcome, if the row is still this round's: a receipt that came before
        (a fast provider) or a lease another worker took over (a send slower than the lease)
        has the last word."""
        t, now = self.table, self.clock.now()
        changes: list[dict[str, Any]] = []
        outcomes: list[tuple[str, str, str]] = []
        gone: dict[int, str] = {}
        for row, result in zip(rows, results, strict=True):
            change = self._change(lane, row, result, now)
            changes.append(change)
            outcomes.append((self.service, lane.channel, _label(result, change["state"])))
            if result.outcome is Outcome.GONE:
                gone[row.id] = row.destination
        async with self.db.transaction() as s:
            ids = [row.id for row in rows]
            mine = set(
                await s.scalars(
                    select(t.c.id)
                    .where(among(s, t.c.id, ids), t.c.state == State.SENDING, t.c.next_attempt_at == lease_until)
                    .with_for_update()
                )
            )
            await update_rows(s, t, "id", [c for c in changes if c["id"] in mine])
            if self.on_gone is not None:
                for destination in sorted({d for i, d in gone.items() if i in mine}):
                    await self.on_gone(s, destination, now)
            failed = [
                Failed(row, c["state"], c["reason"])
                for row, c in zip(rows, changes, strict=True)
                if row.id in mine and c["state"] in (State.DEAD, State.PERMANENT_FAILURE)
            ]
            if failed and self.on_failed is not None:
                await self.on_failed(s, failed, now)
        self.metrics.tally(self.metrics.deliveries, outcomes)

    def _change(self, lane: Lane, row: Row[Any], result: Result, now: datetime) -> dict[str, Any]:
        if result.outcome is Outcome.GONE and self.on_gone is None:  # nobody to switch it off: it stops here
            result = Result(Outcome.PERMANENT, f"the receiver asks us to stop: {result.error}", result.status)
        tried = row.attempts + 1
        step = retries.after(self.schedule, tried, result, self.rng)
        change = {
            "id": row.id,
            "state": step.state,
            "attempts": tried,
            "next_attempt_at": now,
            "reason": result.error,
            "last_status": result.status,
            "provider_ref": result.provider_ref,
            "delivered_at": None,
        }
        about = f"delivery {row.id} ({lane}, {row.msg_id})"
        error = printable(result.error)
        match step.state:
            case State.DELIVERED:
                change.update(delivered_at=now)
            case State.SENDING:
                waiting = "accepted, waiting for its receipt"
                if result.outcome is Outcome.AMBIGUOUS:
                    waiting = f"no answer after it left ({result.error}): waiting for its receipt"
                    log.info("%s: %s", about, printable(waiting))
                change.update(next_attempt_at=now + self.receipt_wait, reason=waiting)
            case State.CREATED:  # gone: not its failure, so not an attempt; it waits for the destination
                change.update(attempts=row.attempts)
                log.warning("%s: the destination asks us to stop (%s); its deliveries wait", about, error)
            case State.TEMPORARY_FAILURE:
                change.update(next_attempt_at=now + timedelta(seconds=step.delay))
                log.info("%s failed (attempt %d), tried again in %.0fs: %s", about, tried, step.delay, error)
            case State.DEAD:
                log.warning("%s dead after %d attempts: %s", about, tried, error)
            case State.PERMANENT_FAILURE:
                log.warning("%s failed for good: %s", about, error)
        return change

    async def gauges(self) -> None:
        """On a scrape: the service's deliveries per channel and state (but delivered and suppressed)."""
        counts = await DeliveryOps(self.db, self.clock, self.table).counts(Filters(states=GAUGED))
        m = self.metrics
        for channel in sorted({lane.channel for lane in self.lanes}):
            for state in GAUGED:
                m.child(m.delivery_states, (self.service, channel, state.value)).set(counts.get((channel, state), 0))


ITEM = ("id", "msg_id", "channel", "destination", "case_id", "kind", "body", "attempts")


def _label(result: Result, state: State) -> str:
    """The outcome as the deliveries counter names it."""
    if state is State.TEMPORARY_FAILURE:
        return "retry"
    return "dead" if state is State.DEAD else result.outcome.value


async def receipt(
    db: Database,
    table: Table,
    clock: Clock,
    schedule: Sequence[float],
    *,
    msg_id: str | None = None,
    provider_ref: str | None = None,
    delivered: bool,
    error: str | None = None,
    rng: random.Random | None = None,
) -> bool:
    """A provider's receipt for one delivery, found by its msg_id or the provider's id for the
    attempt (by both when both are given: a receipt for an earlier attempt then matches
    nothing). One waiting for it (sending, or dead because it never came) becomes delivered, or
    for a failure is retried on the schedule like any temporary failure (it did not arrive, so
    sending it again is safe), and is dead once the schedule is used up. A receipt for a
    delivery past waiting (the same receipt again) changes nothing. Whether such a delivery
    exists: a receipt endpoint answers 404 for one that does not (or no longer: pruned). The
    time it became delivered is its `next_attempt_at` too, from which its retention counts."""
    if msg_id is None and provider_ref is None:
        raise ValueError("a receipt names its delivery by msg_id, by provider_ref, or both")
    t, now = table, clock.now()
    which = [t.c.msg_id == msg_id] if msg_id is not None else []
    if provider_ref is not None:
        # the attempt it reports on; a row not recorded yet (no provider id) may be that attempt
        which.append(
            or_(t.c.provider_ref == provider_ref, t.c.provider_ref.is_(None))
            if msg_id
            else t.c.provider_ref == provider_ref
        )
    waiting = or_(t.c.state == State.SENDING, (t.c.state == State.DEAD) & (t.c.reason == NO_RECEIPT))
    async with db.transaction() as s:
        row = (await s.execute(select(t.c.id, t.c.attempts).where(*which, waiting).with_for_update())).first()
        if row is None:
            return await s.scalar(select(exists().where(*which))) is True
        change: dict[str, Any] = {"state": State.DELIVERED, "delivered_at": now, "next_attempt_at": now, "reason": None}
        if not delivered:
            failed = Result(Outcome.TEMPORARY, error or "the receipt says failed")
            step = retries.after(schedule, max(row.attempts, 1), failed, rng)
            change = {
                "state": step.state,
                "next_attempt_at": now + timedelta(seconds=step.delay),
                "reason": failed.error,
            }
        await s.execute(update(t).where(t.c.id == row.id).values(change))
        return True
