"""Ticket rules: who may see and act on a ticket, and in which state. Pure: a caller, a
ticket row and the jurisdiction in, a refusal (an exception) or nothing out.

- A handler acts on its own unit's tickets (a pool member on the pool's).
- Once a ticket is claimed, only its claimer or a supervisor of its unit unclaims, resolves,
  returns, escalates or whistles it.
- A supervisor also sees, read-only, the tickets of every unit under its own, and reassigns a
  ticket from one unit of its subtree to another.
- Ops read every ticket and act on none.
A refusal says why without any of the ticket's data."""

from enum import StrEnum
from typing import Any

from services.district.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from services.district.events import Role, Tier
from services.district.jurisdiction import Jurisdiction
from services.district.principal import Principal


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    ESCALATED = "escalated"  # sent up a tier by the unit (上报)
    RETURNED = "returned"  # given back as not theirs (退单)
    WHISTLED = "whistled"  # handed to summoned departments (吹哨)
    WITHDRAWN = "withdrawn"  # the dispatcher moved the case elsewhere (e.g. an SLA breach)
    REASSIGNED = "reassigned"  # a supervisor moved it to another unit

    @property
    def in_hand(self) -> bool:
        return self in (TicketStatus.OPEN, TicketStatus.CLAIMED)


class TicketError(DomainError):
    """Anything a desk action refuses; each kind is also the kernel error that says its status."""


class TicketNotFound(TicketError, NotFound):
    code = "ticket_not_found"


class NotYourTicket(TicketError, Forbidden):
    code = "not_your_ticket"


class TicketConflict(TicketError, Conflict):
    """The ticket's state does not allow this action (already claimed, not claimed, closed)."""

    code = "ticket_conflict"


class InvalidRequest(TicketError, Invalid):
    """The action names something that does not exist or is not allowed (a unit, a reason);
    `loc` says which field."""


def visible_units(caller: Principal, j: Jurisdiction) -> frozenset[str]:
    """The units whose tickets a staff caller may read: its own, and for a supervisor every unit under it."""
    assert caller.unit_id is not None
    return j.units_under(caller.unit_id) if caller.supervisor else frozenset({caller.unit_id})


def check_sees(caller: Principal, unit_id: str, j: Jurisdiction) -> None:
    if caller.role == "ops" or unit_id in visible_units(caller, j):
        return
    if caller.supervisor:
        raise NotYourTicket(f"{unit_id} is not {caller.unit_id} or a unit under it; this token cannot see its tickets")
    raise NotYourTicket(f"this token is for {caller.unit_id}'s staff and cannot see {unit_id}'s tickets")


def check_sees_ticket(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    """As check_sees, for a caller who named only the ticket: the refusal does not say which
    unit holds it."""
    if caller.role == "ops" or ticket.unit_id in visible_units(caller, j):
        return
    whose = f"{caller.unit_id} or a unit under it" if caller.supervisor else caller.unit_id
    raise NotYourTicket(f"this ticket is not in the queue of {whose}; this token cannot see it")


def check_member(caller: Principal, ticket: Any) -> None:
    """The caller works in the ticket's unit."""
    if caller.role == "ops":
        raise NotYourTicket("an ops token reads tickets but cannot act on them: use the unit's staff token")
    if caller.unit_id != ticket.unit_id:
        raise NotYourTicket(f"this ticket is not in the queue of {caller.unit_id}, the unit this token is for")


def check_holder(caller: Principal, ticket: Any, action: str) -> None:
    """The caller works in the ticket's unit and, once it is claimed, claimed it or supervises."""
    check_member(caller, ticket)
    if ticket.status == TicketStatus.CLAIMED and ticket.claimed_by_id != caller.staff_id and not caller.supervisor:
        raise NotYourTicket(f"someone else claimed this ticket: only they or a supervisor of the unit can {action} it")


def check_overseer(caller: Principal, ticket: Any, to_unit_id: str, j: Jurisdiction) -> None:
    """A supervisor moves a ticket between units of its own subtree."""
    if not caller.supervisor:
        raise NotYourTicket("only a supervisor can reassign a ticket")
    subtree = visible_units(caller, j)
    if ticket.unit_id not in subtree:
        raise NotYourTicket(f"this ticket is not in {caller.unit_id}'s subtree")
    if to_unit_id not in subtree:
        raise InvalidRequest(f"{to_unit_id!r} is not {caller.unit_id} or a unit under it", loc=("body", "unit_id"))
    if to_unit_id == ticket.unit_id:
        raise InvalidRequest("the ticket is in that unit's queue already", loc=("body", "unit_id"))


def check_claim(status: TicketStatus, holder: str | None = None) -> None:
    if status is TicketStatus.CLAIMED:
        raise TicketConflict(f"ticket is already claimed by {holder}")
    if status is not TicketStatus.OPEN:
        raise TicketConflict(f"ticket is already {status.value}")


def check_unclaim(status: TicketStatus) -> None:
    if status is not TicketStatus.CLAIMED:
        raise TicketConflict(f"ticket is {status.value}; only a claimed ticket can be unclaimed")


def check_resolve(status: TicketStatus) -> None:
    if status is TicketStatus.OPEN:
        raise TicketConflict("claim the ticket before resolving it")
    if not status.in_hand:
        raise TicketConflict(f"ticket is already {status.value}")


def check_hand_over(status: TicketStatus, action: str) -> None:
    if not status.in_hand:
        raise TicketConflict(f"ticket is {status.value}; only an open or claimed ticket can be {action}")


# --- each action's whole rule, for the desk and for `allowed_actions` ---------------------------


def may_claim(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_member(caller, ticket)
    check_claim(TicketStatus(ticket.status), ticket.claimed_by)


def may_unclaim(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_holder(caller, ticket, "unclaim")
    check_unclaim(TicketStatus(ticket.status))


def may_note(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_member(caller, ticket)
    if not TicketStatus(ticket.status).in_hand:
        raise TicketConflict(f"ticket is {ticket.status}; notes and evidence go on an open or claimed ticket")


def may_resolve(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_holder(caller, ticket, "resolve")
    check_resolve(TicketStatus(ticket.status))


def may_escalate(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_holder(caller, ticket, "escalate")
    check_hand_over(TicketStatus(ticket.status), "escalated")
    if ticket.role != Role.LEAD.value:
        raise TicketConflict("a co-handler reports its part; only the lead can escalate")
    if ticket.tier == Tier.BUREAU.value:
        raise TicketConflict("the case is at the bureau tier already: there is no tier above")


def may_return(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_holder(caller, ticket, "return")
    check_hand_over(TicketStatus(ticket.status), "returned")


def may_whistle(caller: Principal, ticket: Any, j: Jurisdiction) -> None:
    check_holder(caller, ticket, "whistle")
    check_hand_over(TicketStatus(ticket.status), "whistled")
    if ticket.tier != Tier.STREET.value or ticket.role != Role.LEAD.value:
        raise TicketConflict("only the street office holding a case can blow the whistle on it")


def may_reassign(caller: Principal, ticket: Any, j: Jurisdiction, to_unit_id: str | None = None) -> None:
    """With `to_unit_id` None: whether some unit of the caller's subtree could take it."""
    if to_unit_id is None:
        others = sorted(visible_units(caller, j) - {ticket.unit_id}) if caller.role == "staff" else []
        to_unit_id = others[0] if others else ticket.unit_id
    check_overseer(caller, ticket, to_unit_id, j)
    check_hand_over(TicketStatus(ticket.status), "reassigned")
    if ticket.role != Role.LEAD.value:
        raise TicketConflict("a co-handler's part cannot be reassigned; reassign the lead's ticket")


# The actions a ticket answers, as the API names them, each with its rule.
RULES = {
    "claim": may_claim,
    "unclaim": may_unclaim,
    "note": may_note,
    "evidence": may_note,
    "resolve": may_resolve,
    "escalate": may_escalate,
    "return": may_return,
    "whistle": may_whistle,
    "reassign": may_reassign,
}


def allowed_actions(caller: Principal, ticket: Any, j: Jurisdiction) -> list[str]:
    """What this caller may do to this ticket now: the actions whose rule passes, so a page
    shows only buttons the API then accepts (a body it refuses aside: a full evidence list,
    a reason left blank)."""
    allowed = []
    for action, rule in RULES.items():
        try:
            rule(caller, ticket, j)
        except TicketError:
            continue
        allowed.append(action)
    return allowed
