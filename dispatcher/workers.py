"""The dispatcher's background loop: the timer worker, which fires durable SLA timers (rows in
the dispatcher's database, indexed by due time).

Any replica may fire a due timer. A replica leases a few hundred due rows in one statement
(`FOR UPDATE SKIP LOCKED`, so replicas take different rows), then fires them a few hundred
cases per transaction: the cases locked in case-id order and loaded at once, each case's due
timers fired in due order, and everything they changed written at once (dispatcher/repository.py).
Leases stay small (500 timers, two transactions' worth on PostgreSQL) so that replicas share
even a wave of a few thousand: a replica that leased thousands at once would fire them alone
while the others found nothing left to lease. A replica killed mid-batch leaves leases that
expire; another replica then fires those. Due timers fire in due order, so a dispatcher that
was down catches up in order. Between passes the worker sleeps until the next timer falls
due (at most its poll interval: timers another process adds meanwhile are found by the next
poll).
"""

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import func, or_, select, update

from dispatcher.domain import Router
from dispatcher.handlers import new_id
from dispatcher.repository import batch
from dispatcher.tables import timers
from services.district.text import printable
from services.messaging.tables import error_text
from services.messaging.transaction import Store
from services.runtime.lifecycle import Stop
from services.runtime.retry import Stopped, retry, transient

log = logging.getLogger(__name__)
SHORTEST_SLEEP = 0.01  # due rows another replica is leasing right now: look again very soon


@dataclass(frozen=True)
class Leased:
    id: int
    case_id: str
    due_at: datetime


@dataclass
class Fired:
    fired: int = 0
    failed: dict[int, str] = field(default_factory=dict)


class TimerWorker:
    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        batch: int = 500,
        per_transaction: int | None = None,
        lease: timedelta = timedelta(seconds=30),
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self.router = router
        self.batch = batch
        # SQLite has one writer: a long transaction holds up every other write of the process.
        self.per_transaction = per_transaction or (250 if store.db.is_postgres else 50)
        self.lease = lease
        self.interval = interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def lease_due(self) -> list[Leased]:
        """Lease up to `batch` due timers, earliest first, in one statement; rows another
        replica is leasing are skipped, so replicas split the work."""
        now = self.store.clock.now()
        due = (
            select(timers.c.id)
            .where(timers.c.due_at <= now, or_(timers.c.lease_until.is_(None), timers.c.lease_until < now))
            .order_by(timers.c.due_at, timers.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        async with self.store.db.transaction() as s:
            rows = await s.execute(
                update(timers)
                .where(timers.c.id.in_(due.scalar_subquery()))
                .values(lease_owner=self.owner, lease_until=now + self.lease)
                .returning(timers.c.id, timers.c.case_id, timers.c.due_at)
            )
            leased = [Leased(r.id, r.case_id, r.due_at) for r in rows]
        return sorted(leased, key=lambda t: (t.due_at, t.id))

    async def fire_due(self, stop: Stop | None = None) -> int:
        """Fire every timer due now, in due order; returns how many fired."""
        fired = 0
        while leased := await self.lease_due():
            for chunk in self._chunks(leased):
                fired += await self._fire(chunk, stop)
        return fired

    def _chunks(self, leased: list[Leased]) -> list[list[Leased]]:
        """The leased timers, `per_transaction` cases at a time, each case's timers together;
        cases in the order of their first due timer."""
        by_case: dict[str, list[Leased]] = {}
        for t in leased:
            by_case.setdefault(t.case_id, []).append(t)
        groups = list(by_case.values())
        return [
            [t for group in groups[i : i + self.per_transaction] for t in group]
            for i in range(0, len(groups), self.per_transaction)
        ]

    async def _fire(self, leased: list[Leased], stop: Stop | None) -> int:
        """Fire leased timers in one transaction; a transient failure is retried at once, while
        the lease holds. If the transaction fails for another reason, the timers are taken one
        per transaction, so that only the failing one keeps its lease (and fires again once it
        expires) and records its failure."""
        what = f"timers: {len(leased)}"
        try:
            outcome = await retry(partial(self._fire_once, leased), what=what, stop=stop)
        except Stopped:
            raise
        except Exception as exc:
            if len(leased) > 1:
                log.info("%s: a timer failed in a batch (%r); taking them one by one", what, exc)
                return sum([await self._fire([t], stop) for t in leased])
            outcome = Fired(failed={leased[0].id: error_text(exc)})
        metrics = self.store.metrics
        metrics.timers_fired.inc(outcome.fired)
        if outcome.failed:
            metrics.timers_failed.inc(len(outcome.failed))
            cases = {t.id: t.case_id for t in leased}
            for timer_id, error in outcome.failed.items():
                log.error("timer %s failed: %s", timer_id, printable(error), extra={"case_id": cases.get(timer_id)})
            await retry(partial(self._record_failures, outcome.failed), what="timers: record failures", stop=stop)
        return outcome.fired

    async def _fire_once(self, leased: list[Leased]) -> Fired:
        """Lock and load the cases, fire their due timers in due order, save it all at commit.
        A timer whose step fails is left alone (its case stays as it was before it) and
        reported; a transient database failure rolls the whole transaction back."""
        outcome = Fired()
        async with self.store.transaction() as tx:
            cases = await batch(tx, self.router, sorted({t.case_id for t in leased}))
            now = self.store.clock.now()
            for timer in cases.due({t.id for t in leased}, self.owner, now):
                try:
                    outcome.fired += cases.fire(timer, now, new_id)
                except Exception as exc:
                    if transient(exc):
                        raise
                    outcome.failed[timer.id] = error_text(exc)
        return outcome

    async def _record_failures(self, failed: dict[int, str]) -> None:
        async with self.store.db.transaction() as s:
            for timer_id, error in failed.items():
                await s.execute(
                    update(timers)
                    .where(timers.c.id == timer_id)
                    .values(failures=timers.c.failures + 1, last_error=error)
                )

    async def gauges(self) -> None:
        """On a scrape: timers pending (every row is a timer not yet fired) and due now."""
        now = self.store.clock.now()
        async with self.store.db.sessions() as s:
            pending, due = (await s.execute(select(func.count(), func.count().filter(timers.c.due_at <= now)))).one()
        metrics = self.store.metrics
        metrics.child(metrics.timers, ("pending",)).set(pending)
        metrics.child(metrics.timers, ("due",)).set(due)

    async def next_due_in(self) -> float:
        """Seconds until the earliest timer nobody holds falls due, at most the poll interval."""
        async with self.store.db.sessions() as s:
            at = await s.scalar(select(func.min(timers.c.due_at)).where(timers.c.lease_until.is_(None)))
        if at is None:
            return self.interval
        return min(max((at - self.store.clock.now()).total_seconds(), SHORTEST_SLEEP), self.interval)

    async def run(self, stop: Stop) -> None:
        while not stop:
            await self.fire_due(stop)
            await stop.sleep(await self.next_due_in())
