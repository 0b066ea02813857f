"""The notifier's own background work: units' digests, and telling ops of notifications that
failed for good (the kernel's delivery worker calls `failed`; sending is that worker's,
services/delivery/worker.py, wired in bootstrap.py).

A unit whose `notify:` block sets `digest_minutes` gets its new tickets (not emergencies) as
one message per that many minutes: the digest is made when its oldest waiting ticket has
waited that long, in one transaction that records the notification, its deliveries, and marks
the tickets it lists; `SKIP LOCKED` lets replicas share the units."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.channels.bodies import masked
from notifier.messages import Audience, Channel, Facts, Kind
from notifier.repository import Notices, Recipient, Telling, derived, digest_item
from notifier.tables import digest_items
from services.delivery.worker import Failed, OnFailed
from services.district.clock import Clock
from services.runtime.lifecycle import Stop
from services.storage.db import Database


class Digests:
    def __init__(self, db: Database, clock: Clock, telling: Telling, *, interval: float) -> None:
        self.db = db
        self.clock = clock
        self.telling = telling
        self.interval = interval
        self.every = {
            unit_id: timedelta(minutes=n.digest_minutes)
            for unit_id, n in telling.outlets.units.items()
            if n.digest_minutes
        }

    async def run(self, stop: Stop) -> None:
        while not stop:
            if await self.make_due() == 0:
                await stop.sleep(self.interval)

    async def make_due(self) -> int:
        """Make every digest that is due now; how many were made."""
        if not self.every:
            return 0
        now = self.clock.now()
        async with self.db.sessions() as s:
            waiting = (
                await s.execute(
                    select(digest_items.c.unit_id, func.min(digest_items.c.created_at))
                    .where(digest_items.c.digest_key.is_(None))
                    .group_by(digest_items.c.unit_id)
                )
            ).all()
        made = 0
        for unit_id, oldest in waiting:
            if unit_id in self.every and oldest + self.every[unit_id] <= now:
                made += await self._make(unit_id, now)
        return made

    async def _make(self, unit_id: str, now: datetime) -> int:
        async with self.db.transaction() as s:
            items = (
                await s.execute(
                    select(digest_items)
                    .where(digest_items.c.unit_id == unit_id, digest_items.c.digest_key.is_(None))
                    .order_by(digest_items.c.id)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not items:
                return 0
            key = derived("digest", unit_id, items[0].key)
            notices = Notices(s, self.telling, now)
            facts = Facts(
                kind=Kind.DIGEST,
                audience=Audience.STAFF,
                case_id="",
                unit=self.telling.names.unit(unit_id),
                items=tuple(digest_item(i.facts) for i in items),
            )
            notify = self.telling.outlets.units[unit_id]
            addresses = tuple((c, a) for c, a in ((Channel.EMAIL, notify.email), (Channel.SMS, notify.phone)) if a)
            recipient = Recipient(f"unit:{unit_id}", Audience.STAFF, "zh-CN", addresses)
            notices.notify(key, None, recipient, facts, urgent=False)
            await notices.write()
            await s.execute(
                update(digest_items).where(digest_items.c.id.in_([i.id for i in items])).values(digest_key=key)
            )
        return 1


def failed(telling: Telling) -> OnFailed:
    """Ops hear of each notification that will not arrive by itself (not of their own: a dead
    alert to ops would only make another), in the transaction that records it."""

    async def tell(session: AsyncSession, failures: Sequence[Failed], at: datetime) -> None:
        notices = Notices(session, telling, at)
        ops = Recipient("ops", Audience.OPS, "zh-CN", telling.outlets.ops)
        for f in failures:
            if f.row.kind.startswith("ops."):
                continue
            facts = Facts(
                kind=Kind.NOTIFICATION_DEAD,
                audience=Audience.OPS,
                case_id=f.row.case_id or "",
                channel=f.row.channel,
                recipient=masked(f.row.destination),
                reason=f.reason or f.state.value,
                at=at,
            )
            # once per death: a delivery re-driven that dies again is news again
            notices.notify(derived("dead", f.row.msg_id, at.isoformat()), f.row.case_id, ops, facts, urgent=True)
        await notices.write()

    return tell
