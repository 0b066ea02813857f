"""Ticket rules: who may act on a ticket, and in which state."""

from enum import StrEnum

from services.errors import Conflict, DomainError, Forbidden, Invalid, NotFound


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    ESCALATED = "escalated"  # sent up a tier by the unit (上报)
    RETURNED = "returned"  # given back as not theirs (退单)
    WHISTLED = "whistled"  # handed to summoned departments (吹哨)
    WITHDRAWN = "withdrawn"  # the dispatcher moved the case elsewhere (e.g. an SLA breach)

    @property
    def in_hand(self) -> bool:
        return self in (TicketStatus.OPEN, TicketStatus.CLAIMED)


class TicketError(DomainError):
    """Anything a desk action refuses; each kind is also the kernel error that says its status."""


class TicketNotFound(TicketError, NotFound):
    pass


class NotYourTicket(TicketError, Forbidden):
    pass


class TicketConflict(TicketError, Conflict):
    """The ticket's state does not allow this action (already claimed, not claimed, closed)."""


class InvalidRequest(TicketError, Invalid):
    """The action names something that does not exist or is not allowed (a unit, a reason);
    `loc` says which field."""


def check_claim(status: TicketStatus) -> None:
    if status is not TicketStatus.OPEN:
        raise TicketConflict(f"ticket is already {status.value}")


def check_resolve(status: TicketStatus) -> None:
    if status is TicketStatus.OPEN:
        raise TicketConflict("claim the ticket before resolving it")
    if not status.in_hand:
        raise TicketConflict(f"ticket is already {status.value}")


def check_hand_over(status: TicketStatus, action: str) -> None:
    if not status.in_hand:
        raise TicketConflict(f"ticket is {status.value}; only an open or claimed ticket can be {action}")
