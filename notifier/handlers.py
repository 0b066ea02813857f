import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from notifier.channels import Channel
from notifier.domain import MAX_ATTEMPTS, drafts_for, retry_delay
from notifier.tables import deliveries, notifications
from services.events import (
    CaseAssigned,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    Envelope,
    Event,
)
from services.lifecycle import Stop
from services.messaging import Handler, Store, Tx
from services.text import printable

log = logging.getLogger(__name__)


def handlers(channels: Sequence[Channel]) -> dict[type[Event], Handler]:
    async def record(tx: Tx, envelope: Envelope, event: Event) -> None:
        """Record the notifications and one pending delivery per channel; the delivery
        worker sends them after this commits, so a crash never loses or doubles one."""
        now = tx.store.clock.now()
        for draft in drafts_for(event):
            notification_id = await tx.session.scalar(
                notifications.insert()
                .values(
                    case_id=event.case_id,
                    audience=draft.audience.value,
                    recipient=draft.recipient,
                    kind=draft.kind,
                    message=draft.message,
                    created_at=now,
                )
                .returning(notifications.c.id)
            )
            await tx.session.execute(
                deliveries.insert(),
                [
                    {
                        "notification_id": notification_id,
                        "channel": c.name,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for c in channels
                ],
            )

    return {
        e: record for e in (CaseAssigned, CaseEscalated, CaseResolved, CaseReopened, CaseSlaWarning, CaseSlaBreached)
    }


async def deliver_due(store: Store, channels: Sequence[Channel], *, batch: int = 50) -> int:
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
        for row in due:
            message: dict[str, Any] = {
                "case_id": row.case_id,
                "audience": row.audience,
                "recipient": row.recipient,
                "kind": row.kind,
                "message": row.message,
                "created_at": row.created_at.isoformat(),
            }
            attempts = row.attempts + 1
            try:
                await by_name[row.channel].send(message)
                values: dict[str, Any] = {
                    "status": "delivered",
                    "attempts": attempts,
                    "delivered_at": now,
                }
            except Exception as exc:
                log.warning("delivery %s over %s failed: %s", row.id, row.channel, printable(exc))
                values = {
                    "status": "failed" if attempts >= MAX_ATTEMPTS else "pending",
                    "attempts": attempts,
                    "last_error": str(exc)[:2000],
                    "next_attempt_at": now + retry_delay(attempts),
                }
            await s.execute(update(deliveries).where(deliveries.c.id == row.id).values(**values))
    return len(due)


async def delivery_loop(stop: Stop, store: Store, channels: Sequence[Channel], *, interval: float) -> None:
    while not stop:
        if await deliver_due(store, channels) == 0:
            await stop.sleep(interval)
