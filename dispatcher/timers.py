"""Durable SLA timers: rows in the dispatcher's database, indexed by due time.

Any replica may fire a due timer. A replica leases a batch of due rows (`SKIP LOCKED`, so
replicas take different rows), then fires them a few dozen per transaction under the case
locks, each case's due timers in due order (see `fire_timers`).
A replica killed mid-batch leaves leases that expire; another replica then fires those.
Due timers fire in due order, so a dispatcher that was down catches up in order.
"""

import logging
import os
import socket
import uuid
from datetime import timedelta
from functools import partial

from sqlalchemy import or_, select, update

from dispatcher.domain import Router
from dispatcher.handlers import fire_timers
from dispatcher.tables import timers
from services.lifecycle import Stop
from services.messaging import Store
from services.retry import retry
from services.text import printable

log = logging.getLogger(__name__)


class TimerWorker:
    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        batch: int = 200,
        per_transaction: int = 50,
        lease: timedelta = timedelta(seconds=30),
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self.router = router
        self.batch = batch
        self.per_transaction = per_transaction
        self.lease = lease
        self.interval = interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def lease_due(self) -> list[int]:
        now = self.store.clock.now()
        async with self.store.db.transaction() as s:
            ids = (
                await s.scalars(
                    select(timers.c.id)
                    .where(timers.c.due_at <= now, or_(timers.c.lease_until.is_(None), timers.c.lease_until < now))
                    .order_by(timers.c.due_at, timers.c.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if ids:
                await s.execute(
                    update(timers)
                    .where(timers.c.id.in_(ids))
                    .values(lease_owner=self.owner, lease_until=now + self.lease)
                )
        return list(ids)

    async def fire_due(self, stop: Stop | None = None) -> int:
        """Fire every timer due now, in due order; returns how many fired."""
        fired = 0
        while ids := await self.lease_due():
            for start in range(0, len(ids), self.per_transaction):
                fired += await self._fire(ids[start : start + self.per_transaction], stop)
        return fired

    async def _fire(self, ids: list[int], stop: Stop | None) -> int:
        """Fire leased timers; a transient failure is retried at once, while the lease holds,
        instead of waiting the lease out."""
        fired, failed = await retry(partial(self._fire_once, ids), what="timers", stop=stop)
        if failed:
            # The failed timers keep their lease and fire again once it expires.
            for timer_id, error in failed.items():
                log.error("timer %s failed: %s", timer_id, printable(error))
            await retry(partial(self._record_failures, failed), what="timers: record failures", stop=stop)
        return fired

    async def _fire_once(self, ids: list[int]) -> tuple[int, dict[int, str]]:
        async with self.store.transaction() as tx:
            return await fire_timers(tx, self.router, ids, self.owner)

    async def _record_failures(self, failed: dict[int, str]) -> None:
        async with self.store.db.transaction() as s:
            for timer_id, error in failed.items():
                await s.execute(
                    update(timers)
                    .where(timers.c.id == timer_id)
                    .values(failures=timers.c.failures + 1, last_error=error)
                )

    async def run(self, stop: Stop) -> None:
        while not stop:
            if await self.fire_due(stop) == 0:
                await stop.sleep(self.interval)
