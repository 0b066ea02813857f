from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from departments.domain import (
    InvalidRequest,
    NotYourTicket,
    TicketConflict,
    TicketNotFound,
    TicketStatus,
    check_claim,
    check_hand_over,
    check_resolve,
)
from departments.tables import tickets
from services.auth import Principal
from services.events import (
    CaseAssigned,
    CaseDuplicateReported,
    CaseUnassigned,
    Envelope,
    Event,
    ReturnReason,
    Role,
    TicketClaimed,
    TicketEscalated,
    TicketResolved,
    TicketReturned,
    TicketWhistled,
    Tier,
)
from services.jurisdiction import Jurisdiction, UnitKind
from services.messaging import Handler, Store, Tx


async def on_case_assigned(tx: Tx, envelope: Envelope, event: CaseAssigned) -> None:
    """Every assignment becomes a ticket in the assigned unit's queue; its id is the
    assignment id, so the dispatcher matches ticket events to assignments."""
    reporters = await tx.session.scalar(select(func.max(tickets.c.reporters)).where(tickets.c.case_id == event.case_id))
    await tx.session.execute(
        tickets.insert().values(
            ticket_id=event.assignment_id,
            case_id=event.case_id,
            unit_id=event.unit_id,
            tier=event.tier.value,
            role=event.role.value,
            priority=event.priority.value,
            category=event.category,
            description=event.description,
            details=event.details,
            reporters=reporters or 1,
            grid_id=event.grid_id,
            status=TicketStatus.OPEN.value,
            response_due=event.response_due,
            resolution_due=event.resolution_due,
            created_at=tx.store.clock.now(),
        )
    )


async def on_case_unassigned(tx: Tx, envelope: Envelope, event: CaseUnassigned) -> None:
    """The case moved elsewhere: a ticket still in hand is withdrawn from the queue."""
    await tx.session.execute(
        update(tickets)
        .where(
            tickets.c.ticket_id == event.assignment_id,
            tickets.c.status.in_([TicketStatus.OPEN.value, TicketStatus.CLAIMED.value]),
        )
        .values(status=TicketStatus.WITHDRAWN.value, handover_reason=event.reason, closed_at=tx.store.clock.now())
    )


async def on_duplicate_reported(tx: Tx, envelope: Envelope, event: CaseDuplicateReported) -> None:
    """The handler sees how many residents reported the problem."""
    await tx.session.execute(
        update(tickets).where(tickets.c.case_id == event.case_id).values(reporters=event.reporters)
    )


HANDLERS: dict[type[Event], Handler] = {
    CaseAssigned: on_case_assigned,
    CaseUnassigned: on_case_unassigned,
    CaseDuplicateReported: on_duplicate_reported,
}


class Desk:
    """What staff do with their unit's tickets. Each action is one transaction that changes
    the ticket and records the ticket event for the dispatcher."""

    def __init__(self, store: Store, jurisdiction: Jurisdiction) -> None:
        self.store = store
        self.j = jurisdiction

    async def _act(
        self,
        ticket_id: str,
        staff: Principal,
        check: Callable[[Any], None],
        values: dict[str, Any],
        event: Callable[[Any], Event],
    ) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            row = (
                await tx.session.execute(select(tickets).where(tickets.c.ticket_id == ticket_id).with_for_update())
            ).first()
            if row is None:
                raise TicketNotFound(f"no ticket {ticket_id}")
            if row.unit_id != staff.unit_id:
                raise NotYourTicket(f"ticket {ticket_id} belongs to another unit")
            check(row)
            changed = (
                await tx.session.execute(
                    update(tickets).where(tickets.c.ticket_id == ticket_id).values(**values).returning(tickets)
                )
            ).one()
            tx.emit(event(changed))
            return dict(changed._mapping)

    async def claim(self, ticket_id: str, staff: Principal) -> dict[str, Any]:
        return await self._act(
            ticket_id,
            staff,
            lambda row: check_claim(TicketStatus(row.status)),
            {"status": TicketStatus.CLAIMED.value, "claimed_by": staff.name, "claimed_at": self.store.clock.now()},
            lambda row: TicketClaimed(case_id=row.case_id, ticket_id=ticket_id, unit_id=row.unit_id),
        )

    async def resolve(self, ticket_id: str, note: str, staff: Principal) -> dict[str, Any]:
        now = self.store.clock.now()
        return await self._act(
            ticket_id,
            staff,
            lambda row: check_resolve(TicketStatus(row.status)),
            {"status": TicketStatus.RESOLVED.value, "note": note, "resolved_at": now, "closed_at": now},
            lambda row: TicketResolved(case_id=row.case_id, ticket_id=ticket_id, unit_id=row.unit_id, note=note),
        )

    async def escalate(self, ticket_id: str, reason: str, staff: Principal) -> dict[str, Any]:
        def check(row: Any) -> None:
            check_hand_over(TicketStatus(row.status), "escalated")
            if row.role != Role.LEAD.value:
                raise TicketConflict("a co-handler reports its part; only the lead can escalate")
            if row.tier == Tier.BUREAU.value:
                raise TicketConflict("the case is at the bureau tier already: there is no tier above")

        return await self._act(
            ticket_id,
            staff,
            check,
            self._handed_over(TicketStatus.ESCALATED, reason),
            lambda row: TicketEscalated(case_id=row.case_id, ticket_id=ticket_id, unit_id=row.unit_id, reason=reason),
        )

    async def return_(
        self, ticket_id: str, code: ReturnReason, reason: str, suggested_unit_id: str | None, staff: Principal
    ) -> dict[str, Any]:
        if suggested_unit_id is not None and self.j.unit(suggested_unit_id) is None:
            raise InvalidRequest(
                f"suggested_unit_id {suggested_unit_id!r} is not a unit of {self.j.district.name}",
                loc=("body", "suggested_unit_id"),
            )
        return await self._act(
            ticket_id,
            staff,
            lambda row: check_hand_over(TicketStatus(row.status), "returned"),
            self._handed_over(TicketStatus.RETURNED, f"{code.value}: {reason}"),
            lambda row: TicketReturned(
                case_id=row.case_id,
                ticket_id=ticket_id,
                unit_id=row.unit_id,
                reason_code=code,
                reason=reason,
                suggested_unit_id=suggested_unit_id,
            ),
        )

    async def whistle(self, ticket_id: str, lead: str, co: list[str], reason: str, staff: Principal) -> dict[str, Any]:
        summoned = [lead, *co]
        places: list[tuple[str | int, ...]] = [("body", "lead"), *(("body", "co", i) for i in range(len(co)))]
        for unit_id, loc in zip(summoned, places, strict=True):
            unit = self.j.unit(unit_id)
            if unit is None or unit.kind is not UnitKind.DEPARTMENT:
                raise InvalidRequest(f"{unit_id!r} is not a department of {self.j.district.name}", loc=loc)
        if len(set(summoned)) != len(summoned):
            raise InvalidRequest("name each department once: the lead is not also a co-handler", loc=("body", "co"))

        def check(row: Any) -> None:
            check_hand_over(TicketStatus(row.status), "whistled")
            if row.tier != Tier.STREET.value or row.role != Role.LEAD.value:
                raise TicketConflict("only the street office holding a case can blow the whistle on it")

        return await self._act(
            ticket_id,
            staff,
            check,
            self._handed_over(TicketStatus.WHISTLED, reason),
            lambda row: TicketWhistled(
                case_id=row.case_id,
                ticket_id=ticket_id,
                unit_id=row.unit_id,
                lead_unit_id=lead,
                co_unit_ids=co,
                reason=reason,
            ),
        )

    def _handed_over(self, status: TicketStatus, reason: str) -> dict[str, Any]:
        return {"status": status.value, "handover_reason": reason, "closed_at": self.store.clock.now()}
