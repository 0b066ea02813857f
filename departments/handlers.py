"""The departments' consumer: assignments become tickets, moved cases withdraw them, and a
report's call-back contact is kept for the unit that will handle it. For a unit with an
adapter, each assignment, unassignment and reopening also becomes a message to its own
system, in the same transaction (departments/adapters/outbound.py)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from departments.adapters import messages, outbound
from departments.adapters.outbound import Outbound
from departments.domain import TicketStatus
from departments.tables import contacts, tickets
from services.district.events import (
    CaseAssigned,
    CaseContactGiven,
    CaseDuplicateReported,
    CaseReopened,
    CaseUnassigned,
    Envelope,
    Event,
)
from services.messaging.consumer import Handler
from services.messaging.transaction import Tx
from services.storage.bulk import among, insert_new, insert_rows

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
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)  # call-back details per case

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
        if self.contacts:
            rows = [{"case_id": c, "contact": self.contacts[c]} for c in sorted(self.contacts)]
            await insert_new(self.session, contacts, rows, "case_id")


def ticket_batch(tx: Tx) -> TicketBatch:
    return tx.pending(TicketBatch, partial(TicketBatch, tx.session), TicketBatch.write)


async def load_tickets(tx: Tx, case_ids: list[str]) -> None:
    """The consumer's hook before a batch: what the batch's cases' tickets count, in one query."""
    await ticket_batch(tx).load(case_ids)


def handlers(out: Outbound) -> dict[type[Event], Handler]:
    async def on_case_assigned(tx: Tx, envelope: Envelope, event: CaseAssigned) -> None:
        """Every assignment becomes a ticket in the assigned unit's queue; its id is the
        assignment id, so the dispatcher matches ticket events to assignments."""
        batch = ticket_batch(tx)
        await batch.load([event.case_id])
        now = tx.store.clock.now()
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
                "due_at": event.response_due,
                "arrived_because": event.reason or None,
                "created_at": now,
            }
        )
        adapter = out.adapters.get(event.unit_id)
        if adapter is not None:
            reporters = batch.new[event.assignment_id]["reporters"]
            contact = await outbound.contact_of(tx, event.case_id, batch.contacts) if adapter.contact else None
            outbound.send(tx, out, envelope, event.unit_id, messages.assignment(event, reporters, contact), now)

    async def on_contact_given(tx: Tx, envelope: Envelope, event: CaseContactGiven) -> None:
        """The resident's name and phone, for the unit that will call back."""
        ticket_batch(tx).contacts[event.case_id] = event.contact

    async def on_case_unassigned(tx: Tx, envelope: Envelope, event: CaseUnassigned) -> None:
        """The case moved elsewhere: a ticket still in hand is withdrawn from the queue."""
        now = tx.store.clock.now()
        ticket_batch(tx).withdraw(event.assignment_id, event.reason, now)
        if event.unit_id in out.adapters:
            outbound.send(tx, out, envelope, event.unit_id, messages.unassigned(event), now)

    async def on_case_reopened(tx: Tx, envelope: Envelope, event: CaseReopened) -> None:
        """The resident was not satisfied: the unit's system hears it (a new assignment follows)."""
        if event.unit_id in out.adapters:
            outbound.send(tx, out, envelope, event.unit_id, messages.reopened(event), tx.store.clock.now())

    async def on_duplicate_reported(tx: Tx, envelope: Envelope, event: CaseDuplicateReported) -> None:
        """The handler sees how many residents reported the problem."""
        ticket_batch(tx).recount(event.case_id, event.reporters)

    return {
        CaseContactGiven: on_contact_given,
        CaseAssigned: on_case_assigned,
        CaseUnassigned: on_case_unassigned,
        CaseReopened: on_case_reopened,
        CaseDuplicateReported: on_duplicate_reported,
    }
