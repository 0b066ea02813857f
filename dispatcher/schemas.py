"""The dispatcher's ops API in types: the answers of `/v1/ops/satisfaction`, `/v1/ops/breaches`
and `/v1/ops/cases/{case_id}`, and the query parameters the figures' routes share."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.domain import AssignmentStatus, CaseStatus
from services.district.events import Priority, Role, Tier
from services.district.text import REMARK, Identifier, Moment

Since = Annotated[Moment | None, Query(description="from, with a time zone (default: 30 days ago)")]
Until = Annotated[Moment | None, Query(description="to, excluded, with a time zone (default: now)")]
Street = Annotated[Identifier | None, Query(description="street id, e.g. S1")]
CommunityQ = Annotated[Identifier | None, Query(description="community id, e.g. C2")]
UnitQ = Annotated[Identifier | None, Query(description="a unit that held an assignment")]
TierQ = Annotated[Tier | None, Query(description="the tier of an assignment")]


class Breach(BaseModel):
    case_id: str
    category: str
    street_id: str
    community_id: str
    grid_id: str
    tier: str
    unit_id: str
    role: str
    assignment_id: str
    clock: str
    due_at: datetime
    late_seconds: float
    supervised: bool
    escalations: list[dict[str, Any]]
    breached_at: datetime | None = Field(None, description="state=all: when the breach was recorded")
    outcome: str | None = Field(
        None, description="state=all: what followed: escalated (to the next tier) or supervised (督办, at the top tier)"
    )
    escalated_to_unit_id: str | None = None
    escalated_to_tier: str | None = None
    met_at: datetime | None = Field(
        None, description="state=all: when the missed clock was met after all (a late claim or resolution), if it was"
    )


class Visits(BaseModel):
    """回访 outcomes. `rate` is satisfied / answered; silence is counted apart (`no_answer`),
    since cities differ on whether an unanswered visit counts as satisfied."""

    satisfied: int = 0
    unsatisfied: int = 0
    no_answer: int = 0
    rate: float | None = None


class UnitVisits(Visits):
    unit_id: str
    unit_name: str | None
    unit_name_zh: str | None


class Satisfaction(Visits):
    # Named after its first home: the embedded app's OpenAPI document tells it from intake's
    # Satisfaction by module, as dispatcher__api__Satisfaction.
    __module__ = "dispatcher.api"

    since: datetime
    until: datetime
    units: list[UnitVisits]


class Assignment(BaseModel):
    """One unit's turn at the case, with its two clocks (response: until claimed; resolution:
    until resolved), their warnings and breaches."""

    assignment_id: str = Field(description="also the ticket id on the departments side")
    case_id: str
    seq: int = Field(description="1 for the first assignment of the case, then 2, 3…")
    unit_id: str
    tier: Tier
    role: Role
    status: AssignmentStatus
    assigned_at: datetime
    response_due: datetime
    resolution_due: datetime
    response_warn_at: datetime
    resolution_warn_at: datetime
    response_warned: bool
    resolution_warned: bool
    response_breached: bool
    resolution_breached: bool
    next_alert_at: datetime | None = Field(description="the next supervision alert (督办), if under supervision")
    alerts: int
    claimed_at: datetime | None
    resolved_at: datetime | None
    end_reason: str | None = Field(description="why an ended assignment ended: escalated, returned, whistled…")
    ended_at: datetime | None = Field(None, description="when it ended unresolved")
    note: str | None = Field(description="the handler's resolution note")


class HistoryEntry(BaseModel):
    """One event the dispatcher recorded, with its details (they differ per type)."""

    model_config = ConfigDict(extra="allow")
    at: datetime
    type: str = Field(description="the event type, e.g. case.assigned, case.sla_breached, case.returned")


class OpsCase(BaseModel):
    """A case as the dispatcher routes it: where it is now, every assignment, every event."""

    case_id: str
    category: str
    description: str
    details: dict[str, Any] = Field(description="address, category attributes and media the resident gave")
    grid_id: str
    community_id: str
    street_id: str
    priority: Priority
    status: CaseStatus
    tier: Tier
    unit_id: str = Field(description="the unit leading the case now")
    returns: int = Field(description="how many times units returned it (退单)")
    supervised: bool = Field(description="under supervision (督办) after a breach at the top tier")
    resolved: bool
    closed: bool
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    assignments: list[Assignment]
    history: list[HistoryEntry]


class Step(BaseModel):
    """One unit's turn on the case's path, in order."""

    ticket_id: str = Field(description="the assignment, and the ticket on the departments side")
    unit_id: str
    tier: Tier
    role: Role
    status: AssignmentStatus
    end_reason: str | None
    breached: bool = Field(description="this unit missed a limit")


class Waiting(BaseModel):
    """What the case waits on: the unit holding it to claim it (response) or resolve it (resolution)."""

    ticket_id: str
    unit_id: str
    tier: Tier
    status: AssignmentStatus
    clock: str = Field(description="response or resolution")
    due_at: datetime


class LateNow(BaseModel):
    """The limit the case is most late on now: the page counts `late_seconds` on from `due_at`."""

    ticket_id: str
    unit_id: str
    tier: Tier
    clock: str
    due_at: datetime
    late_seconds: float


class LastBreach(BaseModel):
    unit_id: str | None
    tier: str | None
    clock: str | None
    late_seconds: float | None
    supervised: bool | None


class Acknowledgement(BaseModel):
    """Ops took up the case's supervision (督办): who, when, and what they said."""

    by: dict[str, Any] = Field(description="{name, role}: the officer")
    at: datetime
    note: str | None


class WatchedCase(BaseModel):
    """One row of the board: a case that breached or is late now."""

    case_id: str
    category: str
    priority: Priority
    status: CaseStatus
    street_id: str
    community_id: str
    grid_id: str
    address: str | None
    excerpt: str = Field(description="the description's first characters")
    created_at: datetime
    path: list[Step]
    waiting: Waiting | None = Field(description="none once resolved or closed")
    late: LateNow | None = Field(description="none unless a limit is missed right now")
    breaches: int = Field(description="first breaches recorded (a supervised case's repeat alerts are not counted)")
    breached_at: datetime = Field(description="the last breach recorded, or when the limit it is late on ran out")
    last_breach: LastBreach | None
    supervised: bool
    acknowledged: Acknowledgement | None = Field(description="ops took up this supervision")
    state: str = Field(description="live: needs ops' eye; done: resolved, closed, or taken up after its last breach")
    met: str | None = Field(description="done: resolved, closed, or claimed (taken up by the unit holding it)")
    met_at: datetime | None


class Watch(BaseModel):
    now: datetime = Field(description="the server's clock: lateness counts on from here")
    since: datetime
    live: list[WatchedCase] = Field(description="most late first, then the newest breach")
    done: list[WatchedCase] = Field(description="the latest met first")


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=500), REMARK] | None = Field(None, description="what ops will do")


class Acknowledged(Acknowledgement):
    case_id: str
    assignment_id: str = Field(description="the assignment under supervision: the ticket to open")
