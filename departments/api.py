"""The staff API: who I am, a unit's or a pool's queue and summary, a ticket, the actions on
it, a pool member's record, and (ops) the staff accounts. Every route first checks that the
caller's account stands (departments/staff.py), then that it may see or act on what it
names (departments/domain.py)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints
from sqlalchemy import select

from departments import queue
from departments.desk import Desk
from departments.domain import TicketStatus, check_sees, check_sees_ticket, visible_units
from departments.staff import DEFAULT_DAYS, Accounts, StaffRole, standing
from departments.tables import tickets
from services.district.events import NoteVisibility, Priority, ReturnReason
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.text import WORDS, Identifier
from services.web.auth import Principal, PrincipalDep
from services.web.errors import Forbidden, NotFound
from services.web.openapi import problem


class Person(BaseModel):
    staff_id: str | None
    name: str


class Note(BaseModel):
    note_id: int
    visibility: str = Field(description="internal (staff and ops) or public (also the resident's)")
    text: str
    by: Person | None
    at: datetime


class CaseNote(Note):
    unit_id: str = Field(description="the unit whose ticket the note was written on")


class Evidence(BaseModel):
    url: str
    caption: str
    by: Person | None
    at: datetime


class Clock(BaseModel):
    name: str | None = Field(description="the clock running now: response while open, resolution once claimed")
    due: datetime | None
    seconds_left: float | None = Field(description="negative once the limit has passed")


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
    claimed_by: Person | None
    claimed_at: datetime | None
    resolved_by: Person | None
    resolved_at: datetime | None
    note: str | None = Field(description="the result, written for the resident")
    arrived_because: str | None = Field(description="why the case came to this unit, if it did not start here")
    handover_reason: str | None = Field(description="why it left this unit (escalated, returned, withdrawn…)")
    contact: dict[str, str] | None = Field(
        description="the resident's name and phone for a call-back: shown to the handling unit's staff only"
    )
    notes: list[Note]
    evidence: list[Evidence]
    case_notes: list[CaseNote] = Field(description="public notes written on the case's earlier tickets")
    response_due: datetime
    resolution_due: datetime
    response_left_seconds: float
    resolution_left_seconds: float
    clock: Clock
    late: bool
    created_at: datetime


class Queue(BaseModel):
    tickets: list[Ticket]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class Summary(BaseModel):
    unit_id: str
    counts: dict[str, int] = Field(description="tickets per status")
    to_do: int = Field(description="open and claimed")
    late: int = Field(description="open or claimed past the limit running now")


class UnitRef(BaseModel):
    unit_id: str
    name: str
    kind: str


class Me(BaseModel):
    staff_id: str | None
    name: str
    role: str = Field(description="handler, supervisor or ops")
    unit_id: str | None
    unit_name: str | None
    unit_kind: str | None
    units: list[UnitRef] = Field(description="the units whose tickets this person may see")


class Record(BaseModel):
    pool_id: str
    staff_id: str
    name: str
    completed: int
    tickets: list[Ticket]


class StaffAccount(BaseModel):
    staff_id: str
    unit_id: str
    name: str
    role: StaffRole
    created_at: datetime
    revoked_at: datetime | None


class NewStaff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: Identifier = Field(description="the person's unit; a pool's id for a pool member")
    name: Annotated[str, Field(min_length=1, max_length=200), WORDS]
    role: StaffRole = StaffRole.HANDLER
    days: int = Field(DEFAULT_DAYS, ge=1, le=3650, description="days until the token expires")


class IssuedStaff(StaffAccount):
    token: str = Field(description="the person's bearer token; shown once")


Text = Annotated[str, Field(min_length=1, max_length=4000), WORDS]
Caption = Annotated[str, Field(min_length=1, max_length=500), WORDS]
Link = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


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


class NewNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text
    visibility: NoteVisibility = Field(
        NoteVisibility.INTERNAL, description="public notes show in the resident's timeline and Open311 status_notes"
    )


class NewEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Link = Field(description="an http or https link to a photo or document")
    caption: Caption


class Reassignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: Identifier = Field(description="a unit in the supervisor's subtree")
    reason: Text


TICKET_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: problem("this person may not see or do this to the ticket; the message says why"),
    404: problem("no ticket with this id"),
    409: problem("the ticket's state does not allow this (e.g. claimed by someone else, or closed)"),
}
QUEUE_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: problem("this person may not see this unit's tickets"),
    404: problem("no such unit (or pool)"),
}


def router(desk: Desk, accounts: Accounts) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["staff"])
    ticket = APIRouter(prefix="/tickets/{ticket_id}", responses=TICKET_ANSWERS)
    db, j, clock = desk.store.db, desk.j, desk.store.clock

    async def caller(principal: PrincipalDep) -> Principal:
        async with db.sessions() as s:
            return await standing(s, principal)

    Caller = Annotated[Principal, Depends(caller)]

    async def ops_caller(who: Caller) -> Principal:
        """An ops token; a staff token is refused (403) only once its account is known to stand
        (a revoked account's token is a 401 here as everywhere)."""
        if who.role != "ops":
            raise Forbidden("this endpoint needs an ops token")
        return who

    Ops = Annotated[Principal, Depends(ops_caller)]

    async def one(ticket_id: str, who: Principal) -> dict[str, Any]:
        async with db.sessions() as s:
            row = (await s.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))).first()
            if row is None:
                raise NotFound(f"no ticket {ticket_id}")
            check_sees_ticket(who, row, j)
            return (await queue.views(s, [row], who, clock.now()))[0]

    async def listing(unit_id: str, who: Principal, q: queue.QueueQuery) -> dict[str, Any]:
        check_sees(who, unit_id, j)
        async with db.sessions() as s:
            rows, cursor = await queue.page(s, unit_id, q, clock.now())
            return {"tickets": await queue.views(s, rows, who, clock.now()), "next_cursor": cursor}

    def queue_query(
        status: Annotated[
            list[TicketStatus] | None, Query(description="repeatable; default: open and claimed (work to do)")
        ] = None,
        category: Annotated[Identifier | None, Query()] = None,
        priority: Annotated[Priority | None, Query()] = None,
        due_before: Annotated[datetime | None, Query(description="the running clock is due before this time")] = None,
        late: Annotated[bool | None, Query(description="true: only work past its limit now; false: none of it")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    ) -> queue.QueueQuery:
        return queue.QueueQuery(
            statuses=status or queue.TO_DO,
            category=category,
            priority=priority.value if priority else None,
            due_before=due_before,
            late=late,
            limit=limit,
            cursor=cursor,
        )

    QueueQueryDep = Annotated[queue.QueueQuery, Depends(queue_query)]

    def known_unit(unit_id: str, kind: UnitKind | None = None) -> None:
        unit = j.unit(unit_id)
        if unit is None or (kind is not None and unit.kind is not kind):
            what = "pool" if kind is UnitKind.POOL else "unit"
            raise NotFound(f"no {what} {unit_id!r} in {j.district.name}")

    @api.get("/me", response_model=Me)
    async def me(who: Caller) -> dict[str, Any]:
        """Who this token is, and the units whose tickets they may see (for the console)."""
        seen = [u.id for u in j.units] if who.role == "ops" else sorted(visible_units(who, j))
        unit = j.unit(who.unit_id) if who.unit_id else None
        return {
            "staff_id": who.staff_id,
            "name": who.name,
            "role": "ops" if who.role == "ops" else who.duty,
            "unit_id": who.unit_id,
            "unit_name": unit.name if unit else None,
            "unit_kind": unit.kind.value if unit else None,
            "units": [_unit_ref(j, u) for u in seen],
        }

    @api.get("/units/{unit_id}/tickets", response_model=Queue, responses=QUEUE_ANSWERS)
    async def unit_queue(unit_id: str, who: Caller, q: QueueQueryDep) -> dict[str, Any]:
        """The unit's queue: by default the work still to do (open and claimed), nearest due
        first (the response limit while open, the resolution limit once claimed)."""
        known_unit(unit_id)
        return await listing(unit_id, who, q)

    @api.get("/units/{unit_id}/summary", response_model=Summary, responses=QUEUE_ANSWERS)
    async def unit_summary(unit_id: str, who: Caller) -> dict[str, Any]:
        """Tickets per status, and how many are late now."""
        known_unit(unit_id)
        check_sees(who, unit_id, j)
        async with db.sessions() as s:
            return await queue.summary(s, unit_id, clock.now())

    @api.get("/pools/{pool_id}/tickets", response_model=Queue, responses=QUEUE_ANSWERS)
    async def pool_queue(pool_id: str, who: Caller, q: QueueQueryDep) -> dict[str, Any]:
        """A volunteer pool's tickets, which its members claim one by one (党员接单)."""
        known_unit(pool_id, UnitKind.POOL)
        return await listing(pool_id, who, q)

    @api.get("/pools/{pool_id}/members/{staff_id}/record", response_model=Record, responses=QUEUE_ANSWERS)
    async def member_record(pool_id: str, staff_id: str, who: Caller) -> dict[str, Any]:
        """The tickets a pool member resolved (the basis for volunteer points): the member,
        supervisors over the pool and ops may see it."""
        known_unit(pool_id, UnitKind.POOL)
        if who.staff_id != staff_id:
            check_sees(who, pool_id, j)
            if who.role == "staff" and not who.supervisor:
                raise Forbidden("a member's record is theirs and their supervisors' to see")
        member = await accounts.get(staff_id)
        if member.unit_id != pool_id:
            raise NotFound(f"{staff_id} is not a member of {pool_id}")
        async with db.sessions() as s:
            rows = list(
                await s.execute(
                    select(tickets)
                    .where(tickets.c.unit_id == pool_id, tickets.c.resolved_by_id == staff_id)
                    .order_by(tickets.c.resolved_at.desc())
                )
            )
            done = await queue.views(s, rows, who, clock.now())
        return {"pool_id": pool_id, "staff_id": staff_id, "name": member.name, "completed": len(done), "tickets": done}

    @ticket.get("", response_model=Ticket)
    async def get_ticket(ticket_id: str, who: Caller) -> dict[str, Any]:
        return await one(ticket_id, who)

    @ticket.post("/claim", response_model=Ticket)
    async def claim(ticket_id: str, who: Caller) -> dict[str, Any]:
        """Take the ticket: exactly one person wins; the answer to the others says who holds it."""
        await desk.claim(ticket_id, who)
        return await one(ticket_id, who)

    @ticket.post("/unclaim", response_model=Ticket)
    async def unclaim(ticket_id: str, who: Caller) -> dict[str, Any]:
        """Put the ticket back in the queue (its claimer or a supervisor); the response clock
        runs again from where it stood."""
        await desk.unclaim(ticket_id, who)
        return await one(ticket_id, who)

    @ticket.post("/notes", response_model=Ticket)
    async def add_note(ticket_id: str, body: NewNote, who: Caller) -> dict[str, Any]:
        await desk.note(ticket_id, body.text, body.visibility, who)
        return await one(ticket_id, who)

    @ticket.post("/evidence", response_model=Ticket)
    async def add_evidence(ticket_id: str, body: NewEvidence, who: Caller) -> dict[str, Any]:
        """A link to a photo or document, with a caption (at most 10 per ticket)."""
        await desk.note(ticket_id, body.caption, NoteVisibility.INTERNAL, who, url=str(body.url))
        return await one(ticket_id, who)

    @ticket.post("/resolve", response_model=Ticket)
    async def resolve(ticket_id: str, body: Resolution, who: Caller) -> dict[str, Any]:
        await desk.resolve(ticket_id, body.note, who)
        return await one(ticket_id, who)

    @ticket.post("/escalate", response_model=Ticket)
    async def escalate(ticket_id: str, body: Escalation, who: Caller) -> dict[str, Any]:
        """上报: send the case one tier up, with the reason."""
        await desk.escalate(ticket_id, body.reason, who)
        return await one(ticket_id, who)

    @ticket.post("/return", response_model=Ticket)
    async def return_ticket(ticket_id: str, body: Return, who: Caller) -> dict[str, Any]:
        """退单: give back a case that is not this unit's; it is dispatched again."""
        await desk.return_(ticket_id, body.reason_code, body.reason, body.suggested_unit_id, who)
        return await one(ticket_id, who)

    @ticket.post("/whistle", response_model=Ticket)
    async def whistle(ticket_id: str, body: Whistle, who: Caller) -> dict[str, Any]:
        """吹哨: a street office summons departments: one lead, any co-handlers."""
        await desk.whistle(ticket_id, body.lead, body.co, body.reason, who)
        return await one(ticket_id, who)

    @ticket.post("/reassign", response_model=Ticket)
    async def reassign(ticket_id: str, body: Reassignment, who: Caller) -> dict[str, Any]:
        """A supervisor moves the ticket to another unit of its subtree."""
        await desk.reassign(ticket_id, body.unit_id, body.reason, who)
        return await one(ticket_id, who)

    staff_answers: dict[int | str, dict[str, Any]] = {
        403: problem("this needs an ops token"),
    }

    @api.post(
        "/staff",
        response_model=IssuedStaff,
        status_code=201,
        tags=["ops"],
        responses={**staff_answers, 409: problem("the unit has a person of this name already")},
    )
    async def add_staff(body: NewStaff, _: Ops) -> dict[str, Any]:
        """Create a person's account in a unit (or pool) and return their token, once."""
        account = await accounts.add(body.unit_id, body.name, body.role)
        return {**account._mapping, "token": accounts.token(account, body.days)}

    @api.get("/staff", response_model=list[StaffAccount], tags=["ops"], responses=staff_answers)
    async def list_staff(_: Ops, unit_id: Annotated[Identifier | None, Query()] = None) -> list[Any]:
        return [r._mapping for r in await accounts.listing(unit_id)]

    @api.post(
        "/staff/{staff_id}/revoke",
        response_model=StaffAccount,
        tags=["ops"],
        responses={**staff_answers, 404: problem("no such account")},
    )
    async def revoke_staff(staff_id: str, _: Ops) -> Any:
        """Refuse this person's tokens from the next request on, on every replica."""
        await accounts.get(staff_id)
        return (await accounts.revoke(staff_id))._mapping

    api.include_router(ticket)
    return api


def _unit_ref(j: Jurisdiction, unit_id: str) -> dict[str, str]:
    unit = j.unit(unit_id)
    assert unit is not None
    return {"unit_id": unit.id, "name": unit.name, "kind": unit.kind.value}
