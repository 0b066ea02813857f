from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

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
from services.bulk import among, insert_rows
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

IN_HAND = (TicketStatus.OPEN.value, TicketStatus.CLAIMED.value)
WITHDRAW = (
    update(tickets)
    .where(
        tickets.c.ticket_id == bindparam("withdrawn_id"),
        or_(*(tickets.c.status == status for status in IN_HAND)),
    )
    .values(status=TicketStatus.WITHDRAWN.value, handover_reason=bindparam("reason"), closed_at=bindparam("at"))
)
RECOUNT = update(tickets).where(tickets.c.case_id == bindparam("recounted_case")).values(reporters=bindparam("count"))


@dataclass
class TicketBatch:
    """What one batch of events does to tickets, kept in memory and written by `write` before
    commit (see `Tx.pending`): one query reads what the batch needs, a few multi-row
    statements write it, and the result is the one its events would have had one by one."""

    session: AsyncSession
    reporters: dict[str, int | None] = field(default_factory=dict)  # per case: the most any ticket counts
    new: dict[str, dict[str, Any]] = field(default_factory=dict)  # tickets opened in this batch
    withdrawn: dict[str, dict[str, Any]] = field(default_factory=dict)  # tickets of earlier batches
    recounted: dict[str, int] = field(default_factory=dict)  # cases whose earlier tickets count anew

    async def load(self, case_ids: Sequence[str]) -> None:
        """The reporter counts of these cases' tickets, for the cases not loaded yet."""
        missing = [c for c in case_ids if c not in self.reporters]
        if not missing:
            return
        self.reporters.update(dict.fromkeys(missing))
        counts = await self.session.execute(
            select(tickets.c.case_id, func.max(tickets.c.reporters))
            .where(among(self.session, tickets.c.case_id, missing))
            .group_by(tickets.c.case_id)
        )
        self.reporters.update({case_id: count for case_id, count in counts})

    def open(self, ticket: dict[str, Any]) -> None:
        """A new ticket counts as many reporters as the case's tickets do already. Every new
        row holds the columns a withdrawal sets, so the batch's rows insert as one statement."""
        case_id = ticket["case_id"]
        reporters = self.reporters[case_id] or 1
        self.reporters[case_id] = max(self.reporters[case_id] or 0, reporters)
        self.new[ticket["ticket_id"]] = {**ticket, "reporters": reporters, "handover_reason": None, "closed_at": None}

    def withdraw(self, ticket_id: str, reason: str, at: datetime) -> None:
        """A ticket still in hand leaves its queue; the first withdrawal is the one that counts."""
        ticket = self.new.get(ticket_id)
        if ticket is None:
            self.withdrawn.setdefault(ticket_id, {"withdrawn_id": ticket_id, "reason": reason, "at": at})
        elif ticket["status"] in IN_HAND:
            ticket.update(status=TicketStatus.WITHDRAWN.value, handover_reason=reason, closed_at=at)

    def recount(self, case_id: str, reporters: int) -> None:
        for ticket in self.new.values():
            if ticket["case_id"] == case_id:
                ticket["reporters"] = reporters
        if self.reporters.get(case_id) is not None:
            self.reporters[case_id] = reporters
        self.recounted[case_id] = reporters

    async def write(self) -> None:
        """Earlier tickets are changed before the new ones are inserted, which already hold
        their final state; rows go in key order, so concurrent writers queue, not deadlock."""
        if self.recounted:
            counts = [{"recounted_case": c, "count": n} for c, n in sorted(self.recounted.items())]
            await self.session.execute(RECOUNT, counts)
        if self.withdrawn:
            await self.session.execute(WITHDRAW, [self.withdrawn[t] for t in sorted(self.withdrawn)])
        if self.new:
            await insert_rows(self.session, tickets, [self.new[t] for t in sorted(self.new)])


def ticket_batch(tx: Tx) -> TicketBatch:
    return tx.pending(TicketBatch, partial(TicketBatch, tx.session), TicketBatch.write)


async def load_tickets(tx: Tx, case_ids: list[str]) -> None:
    """The consumer's hook before a batch: what the batch's cases' tickets count, in one query."""
    await ticket_batch(tx).load(case_ids)


async def on_case_assigned(tx: Tx, envelope: Envelope, event: CaseAssigned) -> None:
    """Every assignment becomes a ticket in the assigned unit's queue; its id is the
    assignment id, so the dispatcher matches ticket events to assignments."""
    batch = ticket_batch(tx)
    await batch.load([event.case_id])
    batch.open(
        {
            "ticket_id": event.assignment_id,
            "case_id": event.case_id,
            "unit_id": event.unit_id,
            "tier": event.tier.value,
            "role": event.role.value,
            "priority": event.priority.value,
            "category": event.category,
            "description": event.description,
            "details": event.details,
            "grid_id": event.grid_id,
            "status": TicketStatus.OPEN.value,
            "response_due": event.response_due,
            "resolution_due": event.resolution_due,
            "created_at": tx.store.clock.now(),
        }
    )


async def on_case_unassigned(tx: Tx, envelope: Envelope, event: CaseUnassigned) -> None:
    """The case moved elsewhere: a ticket still in hand is withdrawn from the queue."""
    ticket_batch(tx).withdraw(event.assignment_id, event.reason, tx.store.clock.now())


async def on_duplicate_reported(tx: Tx, envelope: Envelope, event: CaseDuplicateReported) -> None:
    """The handler sees how many residents reported the problem."""
    ticket_batch(tx).recount(event.case_id, event.reporters)


def handlers() -> dict[type[Event], Handler]:
    return {
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
