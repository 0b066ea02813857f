"""Durable SLA timers: rows in the dispatcher's database, indexed by due time.

Any replica may fire a due timer. A replica leases a batch of due rows (`SKIP LOCKED`, so
replicas take different rows), then fires each in its own transaction under the case lock.
A replica killed mid-batch leaves leases that expire; another replica then fires those.
Due timers fire in due order, so a dispatcher that was down catches up in order.
"""

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update

from dispatcher.domain import Router
from dispatcher.handlers import fire_timer
from dispatcher.tables import timers
from services.messaging import TRANSIENT, Store

log = logging.getLogger(__name__)


class TimerWorker:
    def __init__(
        self,
        store: Store,
        router: Router,
        *,
        batch: int = 200,
        lease: timedelta = timedelta(seconds=30),
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self.router = router
        self.batch = batch
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

    async def fire_due(self) -> int:
        """Fire every timer due now (in due order); returns how many fired."""
        fired = 0
        while ids := await self.lease_due():
            for timer_id in ids:
                fired += await self._fire(timer_id)
        return fired

    async def _fire(self, timer_id: int) -> int:
        try:
            async with self.store.transaction() as tx:
                return int(await fire_timer(tx, self.router, timer_id, self.owner))
        except TRANSIENT:
            raise  # the database is away: the lease expires and the timer fires later
        except Exception as exc:
            log.exception("timer %s failed; it will be retried after its lease", timer_id)
            async with self.store.db.transaction() as s:
                await s.execute(
                    update(timers)
                    .where(timers.c.id == timer_id)
                    .values(failures=timers.c.failures + 1, last_error=str(exc)[:2000])
                )
            return 0

    async def run(self) -> None:
        while True:
            if await self.fire_due() == 0:
                await asyncio.sleep(self.interval)
