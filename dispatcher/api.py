from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from dispatcher.tables import assignments, cases, history
from services.auth import OpsDep
from services.clock import Clock
from services.db import Database

ESCALATION_TYPES = ("case.sla_breached", "case.escalated", "case.returned", "case.whistled")


class Breach(BaseModel):
    case_id: str
    category: str
    street_id: str
    community_id: str
    grid_id: str
    tier: str
    unit_id: str
    role: str
    assignment_id: str
    clock: str
    due_at: datetime
    late_seconds: float
    supervised: bool
    escalations: list[dict[str, Any]]


def router(db: Database, clock: Clock) -> APIRouter:
    api = APIRouter(prefix="/v1/ops", tags=["ops"])

    @api.get("/breaches", response_model=list[Breach])
    async def breaches(
        _: OpsDep,
        street: Annotated[str | None, Query(description="street id, e.g. S1")] = None,
        community: Annotated[str | None, Query(description="community id, e.g. C2")] = None,
        unit: Annotated[str | None, Query(description="the unit now holding the case")] = None,
        category: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        """Cases past a limit right now: an open assignment past its response or resolution
        limit, including cases under supervision (督办) at the top tier. Most late first."""
        now = clock.now()
        response_late = and_(assignments.c.status == "open", assignments.c.response_due <= now)
        resolution_late = and_(assignments.c.status.in_(["open", "claimed"]), assignments.c.resolution_due <= now)
        query = (
            select(
                cases.c.case_id,
                cases.c.category,
                cases.c.street_id,
                cases.c.community_id,
                cases.c.grid_id,
                cases.c.supervised,
                assignments.c.tier,
                assignments.c.unit_id,
                assignments.c.role,
                assignments.c.assignment_id,
                assignments.c.status,
                assignments.c.response_due,
                assignments.c.resolution_due,
            )
            .join(assignments, assignments.c.case_id == cases.c.case_id)
            .where(or_(response_late, resolution_late))
        )
        for column, value in (
            (cases.c.street_id, street),
            (cases.c.community_id, community),
            (assignments.c.unit_id, unit),
            (cases.c.category, category),
        ):
            if value is not None:
                query = query.where(column == value)
        async with db.sessions() as s:
            rows = (await s.execute(query.order_by(assignments.c.response_due).limit(limit))).all()
            trail = (
                await s.execute(
                    select(history)
                    .where(history.c.case_id.in_({r.case_id for r in rows}), history.c.type.in_(ESCALATION_TYPES))
                    .order_by(history.c.id)
                )
            ).all()
        out = []
        for r in rows:
            response = r.status == "open" and r.response_due <= now
            due = r.response_due if response else r.resolution_due
            out.append(
                {
                    **r._mapping,
                    "clock": "response" if response else "resolution",
                    "due_at": due,
                    "late_seconds": (now - due).total_seconds(),
                    "escalations": [{"at": h.at, "type": h.type, **h.details} for h in trail if h.case_id == r.case_id],
                }
            )
        return sorted(out, key=lambda b: -b["late_seconds"])

    @api.get("/cases/{case_id}")
    async def case_history(case_id: str, _: OpsDep) -> dict[str, Any]:
        """The full routing history: every assignment, clock, warning, breach, escalation,
        return and whistle."""
        async with db.sessions() as s:
            case = (await s.execute(select(cases).where(cases.c.case_id == case_id))).first()
            if case is None:
                raise HTTPException(404, f"no case {case_id} in the dispatcher")
            given = await s.execute(
                select(assignments).where(assignments.c.case_id == case_id).order_by(assignments.c.seq)
            )
            trail = await s.execute(select(history).where(history.c.case_id == case_id).order_by(history.c.id))
            return {
                **case._mapping,
                "assignments": [a._asdict() for a in given],
                "history": [{"at": h.at, "type": h.type, **h.details} for h in trail],
            }

    return api
