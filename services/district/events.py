"""Event contracts: every message on the bus is one of these, in a CloudEvents envelope
(services/messaging/envelope.py).

Records are keyed by case id, so all events of one case share a partition and arrive in order.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from services.district.text import first_unstorable


class Stream(StrEnum):
    CASES = "cases"
    TICKETS = "tickets"


class Tier(StrEnum):
    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    BUREAU = "bureau"


class Priority(StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Role(StrEnum):
    LEAD = "lead"
    CO = "co"


class SlaClock(StrEnum):
    RESPONSE = "response"
    RESOLUTION = "resolution"


class EscalationReason(StrEnum):
    BREACH = "breach"
    HANDLER = "handler"
    RETURNED = "returned"
    REASSIGNED = "reassigned"  # a supervisor moved it to another unit of its subtree


class NoteVisibility(StrEnum):
    INTERNAL = "internal"  # staff and ops only
    PUBLIC = "public"  # also in the resident's timeline and Open311's status_notes


class ReturnReason(StrEnum):
    """Why a unit returns (退单) a case."""

    NOT_OUR_JURISDICTION = "not_our_jurisdiction"  # the location is outside the unit's area
    NOT_OUR_RESPONSIBILITY = "not_our_responsibility"  # another unit handles this kind of case
    BEYOND_OUR_POWERS = "beyond_our_powers"  # the unit cannot handle it at its tier
    DUPLICATE = "duplicate"
    OTHER = "other"


def storable(data: Any, info: ValidationInfo) -> Any:
    """Refuse an event or envelope holding text no database column can hold (NUL, a lone
    surrogate) or a number that is not finite: the consumer dead-letters it, instead of its
    handler failing on the database. What was checked already is not checked again: an
    envelope whose JSON text holds nothing that could decode to such a value, and the event
    read from an envelope (its data were checked with the envelope)."""
    if info.context is CHECKED:
        return data
    if found := first_unstorable(data):
        where, problem = found
        raise ValueError(f"{'.'.join(map(str, where)) or 'value'}: {problem}")
    return data


CHECKED: dict[str, Any] = {"checked": "storable"}


class Location(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Actor(BaseModel):
    """The person who acted: a staff account's id and name (never a unit's shared name)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    staff_id: str
    name: str


class Event(BaseModel):
    """The data of one event. Subclasses name their CloudEvents type and their stream."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    type: ClassVar[str]
    stream: ClassVar[Stream]
    case_id: str

    _storable = model_validator(mode="before")(staticmethod(storable))


class CaseReported(Event):
    type = "gridcall.case.reported"
    stream = Stream.CASES
    category: str
    description: str
    location: Location
    grid_id: str
    priority: Priority = Priority.NORMAL
    channel: str = "app"
    household_flag: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="what the handler needs besides the description: address, attributes, media"
    )


class CaseContactGiven(Event):
    """The resident's name and phone for a call-back, apart from `case.reported`: personal data
    goes only to the service that shows it to the handling unit (departments), and a report
    without it costs nothing there."""

    type = "gridcall.case.contact_given"
    stream = Stream.CASES
    contact: dict[str, str]


class CaseFollowed(Event):
    """A resident who left an email address or a phone number follows the case: the notifier
    tells them what happens to it, in their language. Only the notifier handles it. It carries
    the report's tracking token for the link in the first message (the notifier keeps only its
    hash: with it the resident proves who they are to stop the messages)."""

    type = "gridcall.case.followed"
    stream = Stream.CASES
    report_id: str
    email: str | None = None
    phone: str | None = None
    language: str = "zh-CN"
    tracking_token: str
    joined: bool = Field(False, description="the report joined an open case reported close by")


class CaseDuplicateReported(Event):
    """Another resident reported the same problem; their report joined this case."""

    type = "gridcall.case.duplicate_reported"
    stream = Stream.CASES
    reporters: int


class CaseSatisfactionAnswered(Event):
    """The resident's answer to the satisfaction visit (回访); unsatisfied reopens the case."""

    type = "gridcall.case.satisfaction_answered"
    stream = Stream.CASES
    satisfied: bool
    comment: str = ""


class CaseCancelRequested(Event):
    """The resident withdraws the case; only a case nobody has claimed can be withdrawn."""

    type = "gridcall.case.cancel_requested"
    stream = Stream.CASES
    reason: str = ""


class CaseCancelRefused(Event):
    type = "gridcall.case.cancel_refused"
    stream = Stream.CASES
    reason: str


class CaseAssigned(Event):
    type = "gridcall.case.assigned"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    unit_name: str
    tier: Tier
    role: Role = Role.LEAD
    priority: Priority = Priority.NORMAL
    category: str
    description: str
    grid_id: str
    details: dict[str, Any] = Field(default_factory=dict)
    response_due: datetime
    resolution_due: datetime
    reason: str = Field("", description="why the case arrived here: the escalation, return, whistle or reopening")
    location: Location | None = Field(None, description="where the resident reported it")


class CaseUnassigned(Event):
    """An assignment ended unresolved (escalated, returned, whistled away): its ticket is withdrawn."""

    type = "gridcall.case.unassigned"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    reason: str


class CaseClaimed(Event):
    type = "gridcall.case.claimed"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    role: Role = Role.LEAD
    by: Actor | None = None


class Reach(BaseModel):
    """How a staff member is told what happens to the tickets they hold: their own email and
    phone, the channels they chose of them, their language."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    email: str | None = None
    phone: str | None = None
    language: str = "zh-CN"
    channels: tuple[str, ...] = Field(default=(), description="email, sms: the ones this person chose")


class Holder(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    staff_id: str
    name: str
    reach: Reach = Reach()


class CaseHolderChanged(Event):
    """Who holds a unit's ticket of the case now (None once nobody does), and how to reach
    them. Departments emits it on a claim, an unclaim, a hand-over (escalated, returned,
    whistled, reassigned), a revoked account, and when a holder changes how they are reached; only the notifier
    handles it. On the case's partition, in order with the case's other events."""

    type = "gridcall.case.holder_changed"
    stream = Stream.CASES
    ticket_id: str
    unit_id: str
    holder: Holder | None = None


class StaffRevoked(Event):
    """A staff account no longer stands: departments revoked it (its tokens are refused there
    at once). Intake keeps the revoked ids, so that a revoked grid worker's token cannot flag a
    household either. Not about a case: `case_id` carries the account as the partition key
    (`staff:<staff_id>`), so one account's events keep their order."""

    type = "gridcall.staff.revoked"
    stream = Stream.CASES
    staff_id: str
    unit_id: str


class CaseHandlerReported(Event):
    """One handler of a jointly handled case reported its result; the case may still wait for others."""

    type = "gridcall.case.handler_reported"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    role: Role
    note: str
    by: Actor | None = None


class CaseResolved(Event):
    type = "gridcall.case.resolved"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    note: str


class CaseClosed(Event):
    type = "gridcall.case.closed"
    stream = Stream.CASES
    reason: str


class CaseReopened(Event):
    type = "gridcall.case.reopened"
    stream = Stream.CASES
    unit_id: str
    comment: str


class CaseSlaWarning(Event):
    type = "gridcall.case.sla_warning"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    tier: Tier
    clock: SlaClock
    due_at: datetime


class CaseSlaBreached(Event):
    type = "gridcall.case.sla_breached"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    tier: Tier
    clock: SlaClock
    due_at: datetime
    late_seconds: float
    supervised: bool = False
    repeat: int = 0


class CaseEscalated(Event):
    type = "gridcall.case.escalated"
    stream = Stream.CASES
    from_tier: Tier
    from_unit_id: str
    to_tier: Tier
    to_unit_id: str
    reason: EscalationReason
    note: str = ""
    by: Actor | None = None


class CaseReturned(Event):
    type = "gridcall.case.returned"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    reason_code: ReturnReason
    reason: str
    by: Actor | None = None


class CaseWhistled(Event):
    type = "gridcall.case.whistled"
    stream = Stream.CASES
    unit_id: str
    lead_unit_id: str
    co_unit_ids: list[str]
    reason: str
    by: Actor | None = None


class CaseUnclaimed(Event):
    """The claimer (or a supervisor) put the ticket back in the queue; the response clock runs again."""

    type = "gridcall.case.unclaimed"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    by: Actor | None = None


class CaseNoted(Event):
    """A handler's note or evidence link; a public note shows in the resident's timeline."""

    type = "gridcall.case.noted"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    visibility: NoteVisibility
    text: str
    url: str | None = None
    by: Actor | None = None


class DeliveryFailed(Event):
    """A message to a department's system will not arrive by itself (dead after its retries, or
    refused for good): ops are told, and may re-drive it."""

    type = "gridcall.delivery.failed"
    stream = Stream.CASES
    unit_id: str
    kind: str = Field(description="what the message said: the event type it carried")
    delivery_id: int
    reason: str


class TicketClaimed(Event):
    type = "gridcall.ticket.claimed"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    by: Actor | None = None


class TicketResolved(Event):
    type = "gridcall.ticket.resolved"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    note: str
    by: Actor | None = None


class TicketEscalated(Event):
    type = "gridcall.ticket.escalated"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    reason: str
    by: Actor | None = None


class TicketReturned(Event):
    type = "gridcall.ticket.returned"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    reason_code: ReturnReason
    reason: str
    suggested_unit_id: str | None = None
    by: Actor | None = None


class TicketWhistled(Event):
    type = "gridcall.ticket.whistled"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    lead_unit_id: str
    co_unit_ids: list[str]
    reason: str
    by: Actor | None = None


class TicketUnclaimed(Event):
    type = "gridcall.ticket.unclaimed"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    by: Actor | None = None


class TicketNoted(Event):
    """A note (internal or public) or an evidence link (`url`, with the caption as `text`)."""

    type = "gridcall.ticket.noted"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    visibility: NoteVisibility
    text: str
    url: str | None = None
    by: Actor | None = None


class TicketReassigned(Event):
    """A supervisor moved the ticket to another unit of its subtree."""

    type = "gridcall.ticket.reassigned"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    to_unit_id: str
    reason: str
    by: Actor | None = None
