"""The departments' consumer: assignments become tickets, moved cases withdraw them, and a
report's call-back contact is kept for the unit that will handle it. For a unit with an
adapter, each assignment, unassignment and reopening also becomes a message to its own
system, in the same transaction (departments/adapters/outbound.py). What a batch of events
does to tickets is gathered and written set-based by departments/repository.py."""

from departments.adapters import messages, outbound
from departments.adapters.outbound import Outbound
from departments.domain import TicketStatus
from departments.repository import ticket_batch
from services.district.events import (
    CaseAssigned,
    CaseContactGiven,
    CaseDuplicateReported,
    CaseReopened,
    CaseUnassigned,
    Event,
)
from services.messaging.consumer import Handler
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx


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
                "lat": event.location.lat if event.location else None,
                "lon": event.location.lon if event.location else None,
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
