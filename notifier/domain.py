"""Which lifecycle events become which messages, for whom."""

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from services.events import CaseAssigned, CaseResolved, Event


class Audience(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    OPS = "ops"


@dataclass(frozen=True)
class Draft:
    audience: Audience
    recipient: str
    kind: str
    message: str


def drafts_for(event: Event) -> list[Draft]:
    match event:
        case CaseAssigned():
            return [
                Draft(
                    Audience.RESIDENT,
                    f"case:{event.case_id}",
                    "case.assigned",
                    f"Your report has been assigned to {event.unit_name} ({event.tier.value} tier).",
                ),
                Draft(
                    Audience.STAFF,
                    f"unit:{event.unit_id}",
                    "ticket.new",
                    f"New {event.category} ticket {event.assignment_id} in grid {event.grid_id}.",
                ),
            ]
        case CaseResolved():
            return [
                Draft(
                    Audience.RESIDENT,
                    f"case:{event.case_id}",
                    "case.resolved",
                    f"Your report has been resolved: {event.note}",
                )
            ]
    return []


MAX_ATTEMPTS = 8


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff between delivery attempts: 2s, 4s, 8s … capped at 10 minutes."""
    return timedelta(seconds=min(2**attempts, 600))
