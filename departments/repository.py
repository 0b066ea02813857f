"""Loading and saving the departments' tickets for a consumer batch with set-based statements:
the batch's events change a `TicketBatch` in memory (departments/handlers.py), and it is
written in a few multi-row statements before commit."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from departments.domain import TicketStatus
from departments.tables import contacts, tickets
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
