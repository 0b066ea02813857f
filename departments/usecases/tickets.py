"""What staff do with tickets. Each action is one transaction: it locks the ticket, checks who
may act and whether the ticket's state allows it (departments/domain.py), changes the ticket
(or adds a note to it) and records the ticket event for the dispatcher, with who acted.

An action is a `Step` on the locked ticket; `run` applies steps in one transaction, so a
department's system can add its evidence and resolve as one change (departments/adapters/
usecases.py), and, given `once`, applies them at most once: the key goes into the service's
inbox in the same transaction, and a key seen before makes the whole run change nothing."""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from departments.domain import (
    InvalidRequest,
    TicketConflict,
    TicketNotFound,
    TicketStatus,
    may_claim,
    may_escalate,
    may_note,
    may_reassign,
    may_resolve,
    may_return,
    may_unclaim,
    may_whistle,
)
from departments.tables import notes, staff, tickets
from departments.usecases.staff import reach_of
from services.district.events import (
    Actor,
    CaseHolderChanged,
    Event,
    Holder,
    NoteVisibility,
    Reach,
    ReturnReason,
    TicketClaimed,
    TicketEscalated,
    TicketNoted,
    TicketReassigned,
    TicketResolved,
    TicketReturned,
    TicketUnclaimed,
    TicketWhistled,
)
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.principal import Principal
from services.messaging.transaction import Store, Tx

MAX_EVIDENCE = 10

Check = Callable[[Any], None]
# What an action does to a ticket, given the transaction and the ticket's row, locked.
Step = Callable[[Tx, Any], Awaitable[None]]


@dataclass(frozen=True)
class Change:
    """What an action does to a locked ticket: the columns it sets and the event it records."""

    values: dict[str, Any]
    event: Event


class Desk:
    def __init__(self, store: Store, jurisdiction: Jurisdiction) -> None:
        self.store = store
        self.j = jurisdiction

    async def run(self, ticket_id: str, steps: Sequence[Step], *, once: tuple[str, str] | None = None) -> bool:
        """Apply `steps` to the ticket in one transaction, each on the row as the step before
        left it; False, and nothing changed, if `once` (an inbox row: consumer, key) was applied
        before. A refused step rolls back every step before it, and the `once` row with them."""
        async with self.store.transaction() as tx:
            if once is not None and not await self.first_time(tx, *once):
                return False
            await self.apply(tx, ticket_id, steps)
        return True

    async def apply(self, tx: Tx, ticket_id: str, steps: Sequence[Step]) -> None:
        """`steps` inside a transaction the caller holds (a consumer's, with its own inbox)."""
        for step in steps:
            await step(tx, await _locked(tx, ticket_id))

    async def first_time(self, tx: Tx, consumer: str, key: str) -> bool:
        """Record `key` in the inbox; False if it was there already (or a concurrent
        transaction put it there and committed: the insert waits for it)."""
        return bool(await tx.first_time(consumer, [key]))

    async def _act(self, ticket_id: str, step: Step) -> None:
        await self.run(ticket_id, [step])

    @staticmethod
    def _step(check: Check, change: Callable[[Any], Change]) -> Step:
        async def step(tx: Tx, row: Any) -> None:
            check(row)
            done = change(row)
            if done.values:
                where = tickets.c.ticket_id == row.ticket_id
                await tx.session.execute(update(tickets).where(where).values(**done.values))
            tx.emit(done.event)

        return step

    def _now(self) -> Any:
        return self.store.clock.now()

    async def claim(self, ticket_id: str, caller: Principal) -> None:
        await self._act(ticket_id, self.claiming(caller))

    def claiming(self, caller: Principal) -> Step:
        def check(row: Any) -> None:
            may_claim(caller, row, self.j)

        def change(row: Any) -> Change:
            values = {
                "status": TicketStatus.CLAIMED.value,
                "claimed_by": caller.name,
                "claimed_by_id": caller.staff_id,
                "claimed_at": self._now(),
                "due_at": row.resolution_due,
            }
            return Change(values, TicketClaimed(**_about(row), by=_actor(caller)))

        return self._then_tell_holder(self._step(check, change), caller)

    @staticmethod
    def _then_tell_holder(step: Step, caller: Principal | None) -> Step:
        """`step`, then the notifier told who holds the ticket now and how to reach them
        (`caller`; None: nobody holds it)."""

        async def told(tx: Tx, row: Any) -> None:
            await step(tx, row)
            holder = None
            if caller is not None and caller.staff_id is not None:
                # FOR SHARE: a reach changed meanwhile waits for this claim, then tells its ticket too
                mine = select(staff).where(staff.c.staff_id == caller.staff_id).with_for_update(read=True)
                account = (await tx.session.execute(mine)).first()
                reach = reach_of(account._mapping) if account is not None else Reach()
                holder = Holder(staff_id=caller.staff_id, name=caller.name, reach=reach)
            tx.emit(CaseHolderChanged(**_about(row), holder=holder))

        return told

    async def unclaim(self, ticket_id: str, caller: Principal) -> None:
        def check(row: Any) -> None:
            may_unclaim(caller, row, self.j)

        def change(row: Any) -> Change:
            values = {
                "status": TicketStatus.OPEN.value,
                "claimed_by": None,
                "claimed_by_id": None,
                "claimed_at": None,
                "due_at": row.response_due,
            }
            return Change(values, TicketUnclaimed(**_about(row), by=_actor(caller)))

        await self._act(ticket_id, self._then_tell_holder(self._step(check, change), None))

    async def note(
        self, ticket_id: str, text: str, visibility: NoteVisibility, caller: Principal, url: str | None = None
    ) -> None:
        """A note (internal or public), or with `url` an evidence link whose caption is `text`."""
        await self._act(ticket_id, self.noting(text, visibility, caller, url))

    def noting(self, text: str, visibility: NoteVisibility, caller: Principal, url: str | None = None) -> Step:
        async def step(tx: Tx, row: Any) -> None:
            may_note(caller, row, self.j)
            if url is not None:
                held = await tx.session.scalar(
                    select(func.count()).where(notes.c.ticket_id == row.ticket_id, notes.c.kind == "evidence")
                )
                if (held or 0) >= MAX_EVIDENCE:
                    raise TicketConflict(f"a ticket holds at most {MAX_EVIDENCE} pieces of evidence")
            kind = "evidence" if url is not None else visibility.value
            written = {"kind": kind, "text": text, "url": url, "by_id": caller.staff_id, "by_name": caller.name}
            await tx.session.execute(notes.insert().values(**_about(row), **written, at=self._now()))
            tx.emit(TicketNoted(**_about(row), visibility=visibility, text=text, url=url, by=_actor(caller)))

        return step

    async def resolve(self, ticket_id: str, note: str, caller: Principal) -> None:
        await self._act(ticket_id, self.resolving(note, caller))

    def resolving(self, note: str, caller: Principal) -> Step:
        def check(row: Any) -> None:
            may_resolve(caller, row, self.j)

        def change(row: Any) -> Change:
            now = self._now()
            values = {
                "status": TicketStatus.RESOLVED.value,
                "note": note,
                "resolved_by": caller.name,
                "resolved_by_id": caller.staff_id,
                "resolved_at": now,
                "closed_at": now,
            }
            return Change(values, TicketResolved(**_about(row), note=note, by=_actor(caller)))

        return self._step(check, change)

    async def escalate(self, ticket_id: str, reason: str, caller: Principal) -> None:
        def check(row: Any) -> None:
            may_escalate(caller, row, self.j)

        def change(row: Any) -> Change:
            event = TicketEscalated(**_about(row), reason=reason, by=_actor(caller))
            return Change(self._handed_over(TicketStatus.ESCALATED, reason), event)

        await self._act(ticket_id, self._handing_over(check, change))

    async def return_(
        self, ticket_id: str, code: ReturnReason, reason: str, suggested_unit_id: str | None, caller: Principal
    ) -> None:
        await self._act(ticket_id, self.returning(code, reason, suggested_unit_id, caller))

    def returning(self, code: ReturnReason, reason: str, suggested_unit_id: str | None, caller: Principal) -> Step:
        if suggested_unit_id is not None and self.j.unit(suggested_unit_id) is None:
            raise InvalidRequest(
                f"suggested_unit_id {suggested_unit_id!r} is not a unit of {self.j.district.name}",
                loc=("body", "suggested_unit_id"),
            )

        def check(row: Any) -> None:
            may_return(caller, row, self.j)

        def change(row: Any) -> Change:
            event = TicketReturned(
                **_about(row), reason_code=code, reason=reason, suggested_unit_id=suggested_unit_id, by=_actor(caller)
            )
            return Change(self._handed_over(TicketStatus.RETURNED, f"{code.value}: {reason}"), event)

        return self._handing_over(check, change)

    async def whistle(self, ticket_id: str, lead: str, co: list[str], reason: str, caller: Principal) -> None:
        summoned = [lead, *co]
        places: list[tuple[str | int, ...]] = [("body", "lead"), *(("body", "co", i) for i in range(len(co)))]
        for unit_id, loc in zip(summoned, places, strict=True):
            unit = self.j.unit(unit_id)
            if unit is None or unit.kind is not UnitKind.DEPARTMENT:
                raise InvalidRequest(f"{unit_id!r} is not a department of {self.j.district.name}", loc=loc)
        if len(set(summoned)) != len(summoned):
            raise InvalidRequest("name each department once: the lead is not also a co-handler", loc=("body", "co"))

        def check(row: Any) -> None:
            may_whistle(caller, row, self.j)

        def change(row: Any) -> Change:
            event = TicketWhistled(**_about(row), lead_unit_id=lead, co_unit_ids=co, reason=reason, by=_actor(caller))
            return Change(self._handed_over(TicketStatus.WHISTLED, reason), event)

        await self._act(ticket_id, self._handing_over(check, change))

    async def reassign(self, ticket_id: str, to_unit_id: str, reason: str, caller: Principal) -> None:
        if self.j.unit(to_unit_id) is None:
            raise InvalidRequest(f"{to_unit_id!r} is not a unit of {self.j.district.name}", loc=("body", "unit_id"))

        def check(row: Any) -> None:
            may_reassign(caller, row, self.j, to_unit_id)

        def change(row: Any) -> Change:
            event = TicketReassigned(**_about(row), to_unit_id=to_unit_id, reason=reason, by=_actor(caller))
            return Change(self._handed_over(TicketStatus.REASSIGNED, f"to {to_unit_id}: {reason}"), event)

        await self._act(ticket_id, self._handing_over(check, change))

    def _handing_over(self, check: Check, change: Callable[[Any], Change]) -> Step:
        """A hand-over's step: the ticket leaves the unit's hands, and nobody holds it now."""
        return self._then_tell_holder(self._step(check, change), None)

    def _handed_over(self, status: TicketStatus, reason: str) -> dict[str, Any]:
        return {"status": status.value, "handover_reason": reason, "closed_at": self._now()}


async def _locked(tx: Tx, ticket_id: str) -> Any:
    row = (await tx.session.execute(select(tickets).where(tickets.c.ticket_id == ticket_id).with_for_update())).first()
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    return row


def _about(row: Any) -> dict[str, str]:
    return {"case_id": row.case_id, "ticket_id": row.ticket_id, "unit_id": row.unit_id}


def _actor(caller: Principal) -> Actor:
    assert caller.staff_id is not None
    return Actor(staff_id=caller.staff_id, name=caller.name)
