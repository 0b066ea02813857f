"""The notifier's background loop: the delivery worker, which sends the pending deliveries the
handlers recorded, after their commit, and retries failures with exponential backoff until the
attempt limit (`GRIDCALL_NOTIFIER_ATTEMPTS`); `SKIP LOCKED` lets replicas share the work."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from notifier.channels import Channel
from notifier.domain import retry_delay
from notifier.tables import deliveries, notifications
from services.district.text import printable
from services.messaging.transaction import Store
from services.runtime.lifecycle import Stop
from services.runtime.settings import Settings
from services.storage.bulk import among, update_rows

log = logging.getLogger(__name__)
# For callers without settings (tests); bootstrap passes the setting's value.
ATTEMPTS: int = Settings.model_fields["notifier_attempts"].default


async def deliver_due(store: Store, channels: Sequence[Channel], *, batch: int = 200, attempts: int = ATTEMPTS) -> int:
    """Send the deliveries due now, up to `batch` of them at once (concurrently: a slow
    webhook holds up the batch by its own time, not by its time per notification), and
    record the outcomes in one statement per outcome; a delivery failed `attempts` times is
    given up."""
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
                tried = row.attempts + 1
                failed.append(
                    {
                        "id": row.id,
                        "status": "failed" if tried >= attempts else "pending",
                        "attempts": tried,
                        "last_error": str(outcome)[:2000],
                        "next_attempt_at": now + retry_delay(tried),
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
            ("notifier", row.channel, _outcome(outcome, row.attempts, attempts))
            for row, outcome in zip(due, outcomes, strict=True)
        ),
    )
    return len(due)


def _outcome(outcome: object, before: int, attempts: int) -> str:
    """What an attempt made of a delivery tried `before` times already."""
    if outcome is None:
        return "delivered"
    return "dead" if before + 1 >= attempts else "retry"


def _message(row: Any) -> dict[str, Any]:
    return {
        "case_id": row.case_id,
        "audience": row.audience,
        "recipient": row.recipient,
        "kind": row.kind,
        "message": row.message,
        "created_at": row.created_at.isoformat(),
    }


async def delivery_loop(
    stop: Stop, store: Store, channels: Sequence[Channel], *, interval: float, attempts: int = ATTEMPTS
) -> None:
    while not stop:
        if await deliver_due(store, channels, attempts=attempts) == 0:
            await stop.sleep(interval)
