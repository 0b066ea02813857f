from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from notifier.tables import deliveries, notifications
from services.auth import OpsDep
from services.db import Database
from services.text import Identifier


def router(db: Database) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["ops"])

    @api.get("/notifications")
    async def list_notifications(
        _: OpsDep,
        case_id: Annotated[Identifier, Query(description="the case whose notifications to list")],
    ) -> list[dict[str, Any]]:
        """Every notification recorded for a case, with each channel's delivery state."""
        async with db.sessions() as s:
            rows = (
                await s.execute(
                    select(notifications).where(notifications.c.case_id == case_id).order_by(notifications.c.id)
                )
            ).all()
            sent = (
                await s.execute(select(deliveries).where(deliveries.c.notification_id.in_([r.id for r in rows])))
            ).all()
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

    return api
