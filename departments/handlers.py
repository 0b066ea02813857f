from sqlalchemy import select, update

from departments.domain import (
    NotYourTicket,
    TicketNotFound,
    TicketStatus,
    check_claim,
    check_resolve,
)
from departments.tables import tickets
from services.auth import Principal
from services.events import CaseAssigned, Envelope, Event, TicketClaimed, TicketResolved
from services.messaging import Handler, Store, Tx


async def on_case_assigned(tx: Tx, envelope: Envelope, event: CaseAssigned) -> None:
    """Every assignment becomes a ticket in the assigned unit's queue; its id is the
    assignment id, so the dispatcher can match ticket events to assignments."""
    await tx.session.execute(
        tickets.insert().values(
            ticket_id=event.assignment_id,
            case_id=event.case_id,
            unit_id=event.unit_id,
            tier=event.tier.value,
            category=event.category,
            description=event.description,
            grid_id=event.grid_id,
            status=TicketStatus.OPEN.value,
            created_at=tx.store.clock.now(),
        )
    )


HANDLERS: dict[type[Event], Handler] = {CaseAssigned: on_case_assigned}


async def _ticket_for(tx: Tx, ticket_id: str, staff: Principal) -> TicketStatus:
    row = (
        await tx.session.execute(
            select(tickets.c.unit_id, tickets.c.status).where(tickets.c.ticket_id == ticket_id).with_for_update()
        )
    ).first()
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    if row.unit_id != staff.unit_id:
        raise NotYourTicket(f"ticket {ticket_id} belongs to another unit")
    return TicketStatus(row.status)


async def claim_ticket(store: Store, ticket_id: str, staff: Principal) -> dict[str, object]:
    async with store.transaction() as tx:
        check_claim(await _ticket_for(tx, ticket_id, staff))
        row = (
            await tx.session.execute(
                update(tickets)
                .where(tickets.c.ticket_id == ticket_id, tickets.c.status == TicketStatus.OPEN.value)
                .values(
                    status=TicketStatus.CLAIMED.value,
                    claimed_by=staff.name,
                    claimed_at=store.clock.now(),
                )
                .returning(tickets)
            )
        ).one()
        tx.emit(TicketClaimed(case_id=row.case_id, ticket_id=ticket_id, unit_id=row.unit_id))
        return dict(row._mapping)


async def resolve_ticket(store: Store, ticket_id: str, note: str, staff: Principal) -> dict[str, object]:
    async with store.transaction() as tx:
        check_resolve(await _ticket_for(tx, ticket_id, staff))
        row = (
            await tx.session.execute(
                update(tickets)
                .where(tickets.c.ticket_id == ticket_id)
                .values(status=TicketStatus.RESOLVED.value, note=note, resolved_at=store.clock.now())
                .returning(tickets)
            )
        ).one()
        tx.emit(TicketResolved(case_id=row.case_id, ticket_id=ticket_id, unit_id=row.unit_id, note=note))
        return dict(row._mapping)
