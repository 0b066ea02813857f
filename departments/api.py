"""The staff API: who I am, a unit's or a pool's queue and summary, a ticket, the actions on
it, a pool member's record, and (ops) the staff accounts. Routes only: every route first checks
that the caller's account stands (departments/usecases/staff.py), then hands the work to the
use cases, which check that it may see or act on what it names (departments/domain.py)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from departments.domain import TicketStatus
from departments.schemas import (
    Escalation,
    IssuedStaff,
    Me,
    NewEvidence,
    NewNote,
    NewStaff,
    Queue,
    Reassignment,
    Record,
    Resolution,
    Return,
    StaffAccount,
    StaffReach,
    Summary,
    Ticket,
    Whistle,
)
from departments.usecases.queue import TO_DO, QueueQuery, Queues
from departments.usecases.staff import Accounts, reach_of
from departments.usecases.tickets import Desk
from services.district.errors import Forbidden
from services.district.events import NoteVisibility, Priority
from services.district.jurisdiction import UnitKind
from services.district.principal import Principal
from services.district.text import Identifier, Moment
from services.web.auth import PrincipalDep, ops_only
from services.web.openapi import problem
from services.web.parts import bind, part

TICKET_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: problem("this person may not see or do this to the ticket; the message says why"),
    404: problem("no ticket with this id"),
    409: problem("the ticket's state does not allow this (e.g. claimed by someone else, or closed)"),
}
QUEUE_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: problem("this person may not see this unit's tickets"),
    404: problem("no such unit (or pool)"),
}
STAFF_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: problem("this needs an ops token"),
}


def router(desk: Desk, accounts: Accounts, queues: Queues) -> APIRouter:
    """The staff routes, with this deployment's use cases."""
    return bind(api, desk=desk, accounts=accounts, queues=queues)


DeskDep = Annotated[Desk, Depends(part("desk"))]
AccountsDep = Annotated[Accounts, Depends(part("accounts"))]
QueuesDep = Annotated[Queues, Depends(part("queues"))]


async def caller(principal: PrincipalDep, accounts: AccountsDep) -> Principal:
    return await accounts.standing(principal)


Caller = Annotated[Principal, Depends(caller)]


async def ops_caller(who: Caller) -> Principal:
    """An ops token; a staff token is refused (403) only once its account is known to stand
    (a revoked account's token is a 401 here as everywhere)."""
    return ops_only(who)


Ops = Annotated[Principal, Depends(ops_caller)]


def queue_query(
    status: Annotated[
        list[TicketStatus] | None, Query(description="repeatable; default: open and claimed (work to do)")
    ] = None,
    category: Annotated[Identifier | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    due_before: Annotated[
        Moment | None, Query(description="the running clock is due before this time, with a time zone")
    ] = None,
    late: Annotated[bool | None, Query(description="true: only work past its limit now; false: none of it")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="search: a case or ticket id, or words found in the description; "
            "with it, every status unless `status` says which",
        ),
    ] = None,
) -> QueueQuery:
    search = q.strip() if q else None
    return QueueQuery(
        statuses=status or (tuple(TicketStatus) if search else TO_DO),
        search=search or None,
        category=category,
        priority=priority.value if priority else None,
        due_before=due_before,
        late=late,
        limit=limit,
        cursor=cursor,
    )


QueueQueryDep = Annotated[QueueQuery, Depends(queue_query)]

api = APIRouter(prefix="/v1", tags=["staff"])
ticket = APIRouter(prefix="/tickets/{ticket_id}", responses=TICKET_ANSWERS)


@api.get("/me", response_model=Me)
async def me(who: Caller, queues: QueuesDep, accounts: AccountsDep) -> dict[str, Any]:
    """Who this token is, the units whose tickets they may see (for the console), and how they
    are told of the tickets they hold."""
    if who.staff_id is None:
        return queues.me(who)
    account = await accounts.get(who.staff_id)
    return {**queues.me(who), "reach": reach_of(account._mapping).model_dump()}


@api.put("/me/reach", response_model=StaffAccount, responses={403: problem("this needs a staff token")})
async def set_my_reach(body: StaffReach, who: Caller, accounts: AccountsDep) -> Any:
    """How this person is told what happens to the tickets they hold (a staff token only): their
    own email and phone, the channels they choose of them, their language. It applies at once,
    to the tickets they hold already too."""
    if who.staff_id is None:
        raise Forbidden("only a staff account has a reach of its own: an ops token has none")
    return (await accounts.set_reach(who.staff_id, body.reach()))._mapping


@api.get("/units/{unit_id}/tickets", response_model=Queue, responses=QUEUE_ANSWERS)
async def unit_queue(unit_id: str, who: Caller, q: QueueQueryDep, queues: QueuesDep) -> dict[str, Any]:
    """The unit's queue: by default the work still to do (open and claimed), nearest due
    first (the response limit while open, the resolution limit once claimed)."""
    return await queues.listing(unit_id, who, q)


@api.get("/tickets", response_model=Queue, responses={403: problem("`mine` needs a staff token: ops hold no tickets")})
async def tickets_across_units(
    who: Caller,
    q: QueueQueryDep,
    queues: QueuesDep,
    mine: Annotated[bool, Query(description="only the tickets this person holds (a staff token)")] = False,
) -> dict[str, Any]:
    """Every queue the caller may see at once: a supervisor's units and all under them, every
    unit for ops; with `mine`, the tickets this person has claimed. Nearest due first, filtered
    and paged as a unit's queue is."""
    return await queues.across(who, q, mine)


@api.get("/units/{unit_id}/summary", response_model=Summary, responses=QUEUE_ANSWERS)
async def unit_summary(unit_id: str, who: Caller, queues: QueuesDep) -> dict[str, Any]:
    """Tickets per status, and how many are late now."""
    return await queues.unit_summary(unit_id, who)


@api.get("/pools/{pool_id}/tickets", response_model=Queue, responses=QUEUE_ANSWERS)
async def pool_queue(pool_id: str, who: Caller, q: QueueQueryDep, queues: QueuesDep) -> dict[str, Any]:
    """A volunteer pool's tickets, which its members claim one by one (党员接单)."""
    return await queues.listing(pool_id, who, q, UnitKind.POOL)


@api.get("/pools/{pool_id}/members/{staff_id}/record", response_model=Record, responses=QUEUE_ANSWERS)
async def member_record(pool_id: str, staff_id: str, who: Caller, queues: QueuesDep) -> dict[str, Any]:
    """The tickets a pool member resolved (the basis for volunteer points): the member,
    supervisors over the pool and ops may see it."""
    return await queues.record(pool_id, staff_id, who)


@ticket.get("", response_model=Ticket)
async def get_ticket(ticket_id: str, who: Caller, queues: QueuesDep) -> dict[str, Any]:
    return await queues.ticket(ticket_id, who)


@ticket.post("/claim", response_model=Ticket)
async def claim(ticket_id: str, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """Take the ticket: exactly one person wins; the answer to the others says who holds it."""
    await desk.claim(ticket_id, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/unclaim", response_model=Ticket)
async def unclaim(ticket_id: str, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """Put the ticket back in the queue (its claimer or a supervisor); the response clock
    runs again from where it stood."""
    await desk.unclaim(ticket_id, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/notes", response_model=Ticket)
async def add_note(ticket_id: str, body: NewNote, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    await desk.note(ticket_id, body.text, body.visibility, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/evidence", response_model=Ticket)
async def add_evidence(
    ticket_id: str, body: NewEvidence, who: Caller, desk: DeskDep, queues: QueuesDep
) -> dict[str, Any]:
    """A link to a photo or document, with a caption (at most 10 per ticket)."""
    await desk.note(ticket_id, body.caption, NoteVisibility.INTERNAL, who, url=str(body.url))
    return await queues.ticket(ticket_id, who)


@ticket.post("/resolve", response_model=Ticket)
async def resolve(ticket_id: str, body: Resolution, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    await desk.resolve(ticket_id, body.note, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/escalate", response_model=Ticket)
async def escalate(ticket_id: str, body: Escalation, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """上报: send the case one tier up, with the reason."""
    await desk.escalate(ticket_id, body.reason, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/return", response_model=Ticket)
async def return_ticket(ticket_id: str, body: Return, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """退单: give back a case that is not this unit's; it is dispatched again."""
    await desk.return_(ticket_id, body.reason_code, body.reason, body.suggested_unit_id, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/whistle", response_model=Ticket)
async def whistle(ticket_id: str, body: Whistle, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """吹哨: a street office summons departments: one lead, any co-handlers."""
    await desk.whistle(ticket_id, body.lead, body.co, body.reason, who)
    return await queues.ticket(ticket_id, who)


@ticket.post("/reassign", response_model=Ticket)
async def reassign(ticket_id: str, body: Reassignment, who: Caller, desk: DeskDep, queues: QueuesDep) -> dict[str, Any]:
    """A supervisor moves the ticket to another unit of its subtree."""
    await desk.reassign(ticket_id, body.unit_id, body.reason, who)
    return await queues.ticket(ticket_id, who)


@api.post(
    "/staff",
    response_model=IssuedStaff,
    status_code=201,
    tags=["ops"],
    responses={**STAFF_ANSWERS, 409: problem("the unit has a person of this name already")},
)
async def add_staff(body: NewStaff, _: Ops, accounts: AccountsDep) -> dict[str, Any]:
    """Create a person's account in a unit (or pool) and return their token, once."""
    account = await accounts.add(body.unit_id, body.name, body.role, body.reach())
    return {**account._mapping, "token": accounts.token(account, body.days)}


@api.get("/staff", response_model=list[StaffAccount], tags=["ops"], responses=STAFF_ANSWERS)
async def list_staff(_: Ops, accounts: AccountsDep, unit_id: Annotated[Identifier | None, Query()] = None) -> list[Any]:
    return [r._mapping for r in await accounts.listing(unit_id)]


@api.post(
    "/staff/{staff_id}/revoke",
    response_model=StaffAccount,
    tags=["ops"],
    responses={**STAFF_ANSWERS, 404: problem("no such account")},
)
async def revoke_staff(staff_id: str, _: Ops, accounts: AccountsDep) -> Any:
    """Refuse this person's tokens from the next request on, on every replica."""
    await accounts.get(staff_id)
    return (await accounts.revoke(staff_id))._mapping


api.include_router(ticket)
