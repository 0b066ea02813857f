"""Which lifecycle events become which messages, for whom."""

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from services.district.events import (
    CaseAssigned,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    Event,
    Role,
)


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


def _resident(event: Event, kind: str, message: str) -> Draft:
    return Draft(Audience.RESIDENT, f"case:{event.case_id}", kind, message)


def drafts_for(event: Event) -> list[Draft]:
    match event:
        case CaseAssigned():
            drafts = [
                Draft(
                    Audience.STAFF,
                    f"unit:{event.unit_id}",
                    "ticket.new",
                    f"New {event.priority.value} {event.category} ticket {event.assignment_id} "
                    f"({event.role.value}) in grid {event.grid_id}; claim by {event.response_due:%Y-%m-%d %H:%M} UTC.",
                )
            ]
            if event.role is Role.LEAD:
                drafts.insert(
                    0,
                    _resident(
                        event,
                        "case.assigned",
                        f"Your report has been assigned to {event.unit_name} ({event.tier.value} tier).",
                    ),
                )
            return drafts
        case CaseEscalated():
            return [
                _resident(event, "case.escalated", f"Your report has been passed up to the {event.to_tier.value} tier.")
            ]
        case CaseResolved():
            return [_resident(event, "case.resolved", f"Your report has been resolved: {event.note}")]
        case CaseReopened():
            return [
                Draft(
                    Audience.STAFF,
                    f"unit:{event.unit_id}",
                    "case.reopened",
                    f"Case {event.case_id} was reopened: the resident was not satisfied. {event.comment}".strip(),
                )
            ]
        case CaseSlaWarning():
            return [
                Draft(
                    Audience.STAFF,
                    f"unit:{event.unit_id}",
                    "sla.warning",
                    f"Ticket {event.assignment_id}: the {event.clock.value} limit runs out at "
                    f"{event.due_at:%Y-%m-%d %H:%M} UTC.",
                )
            ]
        case CaseSlaBreached():
            late = int(event.late_seconds // 60)
            what = "under supervision (督办)" if event.supervised else "escalated"
            return [
                Draft(
                    Audience.OPS,
                    "ops",
                    "sla.breached",
                    f"Case {event.case_id}: {event.unit_id} ({event.tier.value}) missed the {event.clock.value} "
                    f"limit by {late} min; {what}" + (f", alert #{event.repeat + 1}" if event.repeat else "") + ".",
                )
            ]
    return []


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff between delivery attempts: 2s, 4s, 8s … capped at 10 minutes."""
    return timedelta(seconds=min(2**attempts, 600))
