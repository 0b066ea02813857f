from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from departments.domain import (
    AlreadyClaimed,
    NotClaimed,
    NotYourTicket,
    TicketNotFound,
    TicketStatus,
)
from departments.handlers import claim_ticket, resolve_ticket
from departments.tables import tickets
from services.auth import Principal, PrincipalDep
from services.messaging import Store


class Ticket(BaseModel):
    ticket_id: str
    case_id: str
    unit_id: str
    tier: str
    category: str
    description: str
    grid_id: str
    status: TicketStatus
    claimed_by: str | None
    note: str | None
    created_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None


class Resolution(BaseModel):
    note: str = Field(min_length=1, max_length=4000, description="what was done, for the resident")

    @field_validator("note")
    @classmethod
    def _not_blank(cls, note: str) -> str:
        if not note.strip():
            raise ValueError("note must say what was done; it cannot be blank")
        return note.strip()


def _may_see(principal: Principal, unit_id: str) -> None:
    if principal.role != "ops" and principal.unit_id != unit_id:
        raise HTTPException(403, f"this token is for unit {principal.unit_id}, not {unit_id}")


def _staff_only(principal: Principal) -> Principal:
    if principal.role != "staff":
        raise HTTPException(403, "only a unit's staff token can act on its tickets")
    return principal


def router(store: Store) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["staff"])

    @api.get("/units/{unit_id}/tickets", response_model=list[Ticket])
    async def unit_queue(
        unit_id: str,
        principal: PrincipalDep,
        status: Annotated[TicketStatus | None, Query(description="only tickets in this state")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, object]]:
        """The unit's ticket queue, oldest first."""
        _may_see(principal, unit_id)
        query = select(tickets).where(tickets.c.unit_id == unit_id)
        if status is not None:
            query = query.where(tickets.c.status == status.value)
        async with store.db.sessions() as s:
            rows = await s.execute(query.order_by(tickets.c.created_at).limit(limit))
            return [dict(r._mapping) for r in rows]

    @api.post("/tickets/{ticket_id}/claim", response_model=Ticket)
    async def claim(ticket_id: str, principal: PrincipalDep) -> dict[str, object]:
        try:
            return await claim_ticket(store, ticket_id, _staff_only(principal))
        except TicketNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except NotYourTicket as exc:
            raise HTTPException(403, str(exc)) from None
        except AlreadyClaimed as exc:
            raise HTTPException(409, str(exc)) from None

    @api.post("/tickets/{ticket_id}/resolve", response_model=Ticket)
    async def resolve(ticket_id: str, body: Resolution, principal: PrincipalDep) -> dict[str, object]:
        try:
            return await resolve_ticket(store, ticket_id, body.note, _staff_only(principal))
        except TicketNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except NotYourTicket as exc:
            raise HTTPException(403, str(exc)) from None
        except (AlreadyClaimed, NotClaimed) as exc:
            raise HTTPException(409, str(exc)) from None

    return api
