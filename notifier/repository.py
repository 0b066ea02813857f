"""The notifier's notifications in its tables: `Notices` writes those a batch of events makes,
with their pending deliveries, as two multi-row inserts before commit; `notifications_of` reads
a case's notifications with each channel's delivery state, for the ops API."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.channels import Channel
from notifier.domain import Draft
from notifier.tables import deliveries, notifications
from services.storage.bulk import insert_rows
from services.storage.db import Database


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


async def notifications_of(db: Database, case_id: str) -> list[dict[str, Any]]:
    """Every notification recorded for a case, oldest first, each with its deliveries."""
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(notifications).where(notifications.c.case_id == case_id).order_by(notifications.c.id)
            )
        ).all()
        sent = (await s.execute(select(deliveries).where(deliveries.c.notification_id.in_([r.id for r in rows])))).all()
    out = []
    for r in rows:
        out.append(
            {
                **r._mapping,
                "deliveries": [
                    {"channel": d.channel, "status": d.status, "attempts": d.attempts}
                    for d in sent
                    if d.notification_id == r.id
                ],
            }
        )
    return out
