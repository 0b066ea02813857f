import uuid
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher import domain
from dispatcher.domain import Case, CaseStatus
from dispatcher.tables import assignments, cases
from services.events import (
    CaseReported,
    Envelope,
    Event,
    Priority,
    TicketClaimed,
    TicketResolved,
    Tier,
)
from services.jurisdiction import Jurisdiction
from services.messaging import Handler, Tx


async def load_case(session: AsyncSession, case_id: str) -> Case | None:
    row = (await session.execute(select(cases).where(cases.c.case_id == case_id))).first()
    if row is None:
        return None
    return Case(
        case_id=row.case_id,
        category=row.category,
        description=row.description,
        grid_id=row.grid_id,
        priority=Priority(row.priority),
        status=CaseStatus(row.status),
        tier=Tier(row.tier),
        unit_id=row.unit_id,
        assignment_id=row.assignment_id,
    )


async def on_reported(j: Jurisdiction, tx: Tx, envelope: Envelope, event: CaseReported) -> None:
    if await load_case(tx.session, event.case_id) is not None:
        return
    assignment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"assignment:{envelope.id}"))
    case, events = domain.dispatch(j, event, assignment_id)
    now = tx.store.clock.now()
    await tx.session.execute(
        cases.insert().values(
            case_id=case.case_id,
            category=case.category,
            description=case.description,
            grid_id=case.grid_id,
            priority=case.priority.value,
            status=case.status.value,
            tier=case.tier.value,
            unit_id=case.unit_id,
            assignment_id=case.assignment_id,
            created_at=now,
            updated_at=now,
        )
    )
    await tx.session.execute(
        assignments.insert().values(
            assignment_id=assignment_id,
            case_id=case.case_id,
            unit_id=case.unit_id,
            tier=case.tier.value,
            status="open",
            assigned_at=now,
        )
    )
    _emit(tx, events)


async def on_ticket_claimed(tx: Tx, envelope: Envelope, event: TicketClaimed) -> None:
    case = await _require_case(tx, event.case_id)
    case, events = domain.claim(case, event)
    now = tx.store.clock.now()
    await _save_status(tx, case)
    await tx.session.execute(
        update(assignments)
        .where(assignments.c.assignment_id == event.ticket_id)
        .values(status="claimed", claimed_at=now)
    )
    _emit(tx, events)


async def on_ticket_resolved(tx: Tx, envelope: Envelope, event: TicketResolved) -> None:
    case = await _require_case(tx, event.case_id)
    case, events = domain.resolve(case, event)
    now = tx.store.clock.now()
    await _save_status(tx, case)
    await tx.session.execute(
        update(assignments)
        .where(assignments.c.assignment_id == event.ticket_id)
        .values(status="resolved", resolved_at=now, note=event.note)
    )
    _emit(tx, events)


async def _require_case(tx: Tx, case_id: str) -> Case:
    case = await load_case(tx.session, case_id)
    if case is None:
        raise domain.InvalidTransition(f"no case {case_id} in the dispatcher")
    return case


async def _save_status(tx: Tx, case: Case) -> None:
    await tx.session.execute(
        update(cases)
        .where(cases.c.case_id == case.case_id)
        .values(status=case.status.value, updated_at=tx.store.clock.now())
    )


def _emit(tx: Tx, events: list[Event]) -> None:
    for e in events:
        tx.emit(e)


def handlers(j: Jurisdiction) -> dict[type[Event], Handler]:
    return {
        CaseReported: partial(on_reported, j),
        TicketClaimed: on_ticket_claimed,
        TicketResolved: on_ticket_resolved,
    }
