"""The relay: publishes a service's committed outbox rows, in order, then deletes them."""

import asyncio
import logging
import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    delete,
    func,
    select,
)

from services.messaging.bus import TYPE_HEADER, Bus, Message, type_headers
from services.messaging.transaction import Store
from services.runtime.failpoints import Failpoints
from services.runtime.lifecycle import Stop
from services.runtime.retry import Stopped, always, describe, retry

log = logging.getLogger(__name__)


class Relay:
    """Publishes a service's committed outbox rows, in order, then deletes them."""

    def __init__(
        self, store: Store, bus: Bus, *, interval: float = 0.2, batch: int = 500, failpoints: Failpoints | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.interval = interval
        self.batch = batch
        self.failpoints = failpoints or Failpoints()
        # Only one relay of a service publishes at a time, so per-case order survives replicas.
        self._lock_id = zlib.crc32(store.outbox.name.encode())

    async def relay_once(self, *, wait: bool = False) -> int:
        """Publish the oldest outbox rows. They are claimed and deleted in one statement, in a
        transaction that commits only once the bus has acknowledged them all: a failure to
        publish rolls the delete back, and the rows go out again (the inbox drops repeats).
        While another replica's relay publishes, this one publishes nothing, or with `wait`
        waits its turn (the last rounds at a stop, when no later round would come)."""
        if not self.store.db.is_postgres:
            return await self._relay_outside_the_write_lock()
        table = self.store.outbox
        async with self.store.db.transaction() as s:
            if wait:
                await s.execute(select(func.pg_advisory_xact_lock(self._lock_id)))
            elif not await s.scalar(select(func.pg_try_advisory_xact_lock(self._lock_id))):
                return 0
            oldest = select(table.c.id).order_by(table.c.id).limit(self.batch)
            claimed = await s.execute(
                delete(table)
                .where(table.c.id.in_(oldest))
                .returning(table.c.id, table.c.topic, table.c.key, table.c.payload)
            )
            rows = sorted(claimed.all(), key=lambda r: r.id)  # RETURNING promises no order
            if rows:
                await self._publish(rows)
                await self.failpoints.reach("relay.published")
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        messages = [Message(r.topic, r.key, r.payload, type_headers(r.payload)) for r in rows]
        await self.bus.publish(messages)
        m = self.store.metrics
        m.tally(m.produced, ((self.store.service, x.topic, x.headers.get(TYPE_HEADER, "")) for x in messages))

    async def _relay_outside_the_write_lock(self) -> int:
        """SQLite has one write lock for the whole file, and a relay that held it while the bus
        made its records durable (an fsync of the bus's own file) held up every other writer of
        the process: a third of the lock's time under load. So on SQLite the rows are read,
        published, and only then deleted. The embedded process runs one relay per outbox, so
        no other takes the same rows; a crash between publish and delete publishes them again,
        as a failed commit would (the inbox drops repeats)."""
        table = self.store.outbox
        async with self.store.db.reading() as conn:
            oldest = select(table.c.id, table.c.topic, table.c.key, table.c.payload).order_by(table.c.id)
            rows = (await conn.execute(oldest.limit(self.batch))).all()
        if rows:
            await self._publish(rows)
            await self.failpoints.reach("relay.published")
            async with self.store.db.transaction() as s:
                await s.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        return len(rows)

    async def run(self, stop: Stop) -> None:
        """Publish until asked to stop, then once more what is left (the process's last writes),
        in as many rounds as it takes; a failure then leaves the rows for the next start."""
        what = f"outbox relay {self.store.outbox.name}"
        while not stop:
            self.store.outbox_written.clear()
            try:  # database or broker away, or a record the broker refuses: keep the rows, try again
                sent = await retry(self.relay_once, what=what, stop=stop, retry_on=always)
            except Stopped:
                break
            if sent < self.batch:
                try:
                    await asyncio.wait_for(self.store.outbox_written.wait(), self.interval)
                except TimeoutError:
                    pass
        try:
            while await self.relay_once(wait=True) == self.batch:
                pass
        except Exception as exc:  # noqa: BLE001  (the rows stay, and go out at the next start)
            log.warning("%s: its last rows wait for the next start: %s", what, describe(exc))
