import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.channels import Channel
from notifier.domain import MAX_ATTEMPTS, Draft, drafts_for, retry_delay
from notifier.tables import deliveries, notifications
from services.district.events import (
    CaseAssigned,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    Envelope,
    Event,
)
from services.district.text import printable
from services.messaging.consumer import Handler
from services.messaging.transaction import Store, Tx
from services.runtime.lifecycle import Stop
from services.storage.bulk import among, insert_rows, update_rows

log = logging.getLogger(__name__)


@dataclass
class Notices:
    """The notifications a batch of events makes, with one pending delivery per channel each,
    written before commit (see `Tx.pending`) as two multi-row inserts; the delivery worker
    sends them after the commit, so a crash never loses or doubles one."""

    session: AsyncSession
    channels: Sequence[Channel]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, case_id: str, drafts: Sequence[Draft], now: datetime) -> None:
        self.rows += [
            {
                "case_id": case_id,
                "audience": d.audience.value,
                "recipient": d.recipient,
                "kind": d.kind,
                "message": d.message,
                "created_at": now,
            }
            for d in drafts
        ]

    async def write(self) -> None:
        """A notification's deliveries need its id and time only, so the ids come back in
        whatever order the database returns them, and both inserts are one statement each."""
        if not self.rows:
            return
        inserted = await self.session.execute(
            notifications.insert().returning(notifications.c.id, notifications.c.created_at), self.rows
        )
        await insert_rows(
            self.session,
            deliveries,
            [
                {
                    "notification_id": n.id,
                    "channel": c.name,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": n.created_at,
                }
                for n in inserted
                for c in self.channels
            ],
        )


def handlers(channels: Sequence[Channel]) -> dict[type[Event], Handler]:
    async def record(tx: Tx, envelope: Envelope, event: Event) -> None:
        """Lifecycle events become notifications for residents, staff and ops."""
        notices = tx.pending(Notices, partial(Notices, tx.session, channels), Notices.write)
        notices.add(event.case_id, drafts_for(event), tx.store.clock.now())

    return {
        CaseAssigned: record,
        CaseEscalated: record,
        CaseResolved: record,
        CaseReopened: record,
        CaseSlaWarning: record,
        CaseSlaBreached: record,
    }


async def deliver_due(store: Store, channels: Sequence[Channel], *, batch: int = 200) -> int:
    """Send the deliveries due now, up to `batch` of them at once (concurrently: a slow
    webhook holds up the batch by its own time, not by its time per notification), and
    record the outcomes in one statement per outcome."""
    by_name = {c.name: c for c in channels}
    now = store.clock.now()
    async with store.db.transaction() as s:
        due = (
            await s.execute(
                select(deliveries, notifications)
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(batch)
                .with_for_update(of=deliveries, skip_locked=True)
            )
        ).all()
        outcomes = await asyncio.gather(
            *(by_name[row.channel].send(_message(row)) for row in due), return_exceptions=True
        )
        delivered = [row.id for row, outcome in zip(due, outcomes, strict=True) if outcome is None]
        failed: list[dict[str, Any]] = []
        for row, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning("delivery %s over %s failed: %s", row.id, row.channel, printable(outcome))
                attempts = row.attempts + 1
                failed.append(
                    {
                        "id": row.id,
                        "status": "failed" if attempts >= MAX_ATTEMPTS else "pending",
                        "attempts": attempts,
                        "last_error": str(outcome)[:2000],
                        "next_attempt_at": now + retry_delay(attempts),
                    }
                )
            elif isinstance(outcome, BaseException):
                raise outcome  # a cancellation: the transaction rolls back, nothing is marked
        if delivered:
            await s.execute(
                update(deliveries)
                .where(among(s, deliveries.c.id, delivered))
                .values(status="delivered", attempts=deliveries.c.attempts + 1, delivered_at=now)
            )
        await update_rows(s, deliveries, "id", failed)
    m = store.metrics
    m.tally(
        m.deliveries,
        (
            ("notifier", row.channel, _outcome(outcome, row.attempts))
            for row, outcome in zip(due, outcomes, strict=True)
        ),
    )
    return len(due)


def _outcome(outcome: object, attempts: int) -> str:
    if outcome is None:
        return "delivered"
    return "dead" if attempts + 1 >= MAX_ATTEMPTS else "retry"


def _message(row: Any) -> dict[str, Any]:
    return {
        "case_id": row.case_id,
        "audience": row.audience,
        "recipient": row.recipient,
        "kind": row.kind,
        "message": row.message,
        "created_at": row.created_at.isoformat(),
    }


async def delivery_loop(stop: Stop, store: Store, channels: Sequence[Channel], *, interval: float) -> None:
    while not stop:
        if await deliver_due(store, channels) == 0:
            await stop.sleep(interval)
