"""Ticket rules: who may act on a ticket, and in which state."""

from enum import StrEnum


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class TicketError(Exception):
    pass


class TicketNotFound(TicketError):
    pass


class NotYourTicket(TicketError):
    pass


class AlreadyClaimed(TicketError):
    pass


class NotClaimed(TicketError):
    pass


def check_claim(status: TicketStatus) -> None:
    if status is not TicketStatus.OPEN:
        raise AlreadyClaimed(f"ticket is already {status.value}")


def check_resolve(status: TicketStatus) -> None:
    if status is TicketStatus.OPEN:
        raise NotClaimed("claim the ticket before resolving it")
    if status is TicketStatus.RESOLVED:
        raise AlreadyClaimed("ticket is already resolved")
