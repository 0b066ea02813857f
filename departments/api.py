from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from departments.domain import TicketStatus
from departments.handlers import Desk
from departments.tables import tickets
from services.auth import Principal, PrincipalDep
from services.errors import Forbidden
from services.events import ReturnReason
from services.openapi import problem
from services.text import WORDS, Identifier


class Ticket(BaseModel):
    ticket_id: str
    case_id: str
    unit_id: str
    tier: str
    role: str
    priority: str
    category: str
    description: str
    details: dict[str, Any] = Field(description="address, category attributes and media the resident gave")
    reporters: int = Field(description="how many residents reported this problem")
    grid_id: str
    status: TicketStatus
    claimed_by: str | None
    note: str | None
    handover_reason: str | None
    response_due: datetime
    resolution_due: datetime
    created_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None


Text = Annotated[str, Field(min_length=1, max_length=4000), WORDS]


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(description="what was done, for the resident")


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why the case needs the tier above")


class Return(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason_code: ReturnReason
    reason: Text
    suggested_unit_id: Identifier | None = Field(None, description="the unit that should handle it, if known")


class Whistle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead: Identifier = Field(description="the department that leads")
    co: list[Identifier] = Field(default=[], max_length=10, description="departments that co-handle")
    reason: Text


def _may_see(principal: Principal, unit_id: str) -> None:
    if principal.role != "ops" and principal.unit_id != unit_id:
        raise Forbidden(f"this token is for unit {principal.unit_id}, not {unit_id}")


def _staff_only(principal: Principal) -> Principal:
    if principal.role != "staff":
        raise Forbidden("only a unit's staff token can act on its tickets")
    return principal


TICKET_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: problem("no ticket with this id"),
    409: problem("the ticket's state does not allow this (e.g. already claimed, or no tier above)"),
}


def router(desk: Desk) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["staff"])
    ticket = APIRouter(prefix="/tickets/{ticket_id}", responses=TICKET_ANSWERS)
    db = desk.store.db

    @api.get("/units/{unit_id}/tickets", response_model=list[Ticket])
    async def unit_queue(
        unit_id: str,
        principal: PrincipalDep,
        status: Annotated[TicketStatus | None, Query(description="only tickets in this state")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        """The unit's ticket queue, oldest first."""
        _may_see(principal, unit_id)
        query = select(tickets).where(tickets.c.unit_id == unit_id)
        if status is not None:
            query = query.where(tickets.c.status == status.value)
        async with db.sessions() as s:
            rows = await s.execute(query.order_by(tickets.c.created_at).limit(limit))
            return [dict(r._mapping) for r in rows]

    @ticket.post("/claim", response_model=Ticket)
    async def claim(ticket_id: str, principal: PrincipalDep) -> dict[str, Any]:
        return await desk.claim(ticket_id, _staff_only(principal))

    @ticket.post("/resolve", response_model=Ticket)
    async def resolve(ticket_id: str, body: Resolution, principal: PrincipalDep) -> dict[str, Any]:
        return await desk.resolve(ticket_id, body.note, _staff_only(principal))

    @ticket.post("/escalate", response_model=Ticket)
    async def escalate(ticket_id: str, body: Escalation, principal: PrincipalDep) -> dict[str, Any]:
        """上报: send the case one tier up, with the reason."""
        return await desk.escalate(ticket_id, body.reason, _staff_only(principal))

    @ticket.post("/return", response_model=Ticket)
    async def return_ticket(ticket_id: str, body: Return, principal: PrincipalDep) -> dict[str, Any]:
        """退单: give back a case that is not this unit's; it is dispatched again."""
        staff = _staff_only(principal)
        return await desk.return_(ticket_id, body.reason_code, body.reason, body.suggested_unit_id, staff)

    @ticket.post("/whistle", response_model=Ticket)
    async def whistle(ticket_id: str, body: Whistle, principal: PrincipalDep) -> dict[str, Any]:
        """吹哨: a street office summons departments: one lead, any co-handlers."""
        return await desk.whistle(ticket_id, body.lead, body.co, body.reason, _staff_only(principal))

    api.include_router(ticket)
    return api
