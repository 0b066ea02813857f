from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from notifier.domain import Audience
from notifier.tables import deliveries, notifications
from services.district.text import Identifier
from services.storage.db import Database
from services.web.auth import OpsDep


class Delivery(BaseModel):
    channel: str = Field(description="e.g. log, webhook")
    status: Literal["pending", "delivered", "failed"] = Field(description="failed: given up after the last retry")
    attempts: int


class Notification(BaseModel):
    id: int
    case_id: str
    audience: Audience
    recipient: str = Field(description="case:<id> for the resident, unit:<id> for staff, ops")
    kind: str = Field(description="what happened, e.g. case.assigned, ticket.new, case.sla_breached")
    message: str
    created_at: datetime
    deliveries: list[Delivery] = Field(description="one per channel")


def router(db: Database) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["ops"])

    @api.get("/notifications", response_model=list[Notification])
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
