"""What a department's system receives and sends: the CloudEvents gridcall delivers (by
webhook or on the unit's assignments topic) and the updates it accepts back (on the inbound
endpoint or the unit's updates topic). One set of models for both faces, and the source of
the AsyncAPI contract (docs/asyncapi.yaml); with the pure functions that make what is sent
from gridcall's events."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

from services.district.events import (
    CaseAssigned,
    CaseReopened,
    CaseUnassigned,
    Location,
    Priority,
    ReturnReason,
    Role,
    Tier,
)
from services.district.text import WORDS

SOURCE = "/gridcall/departments"


class AssignmentData(BaseModel):
    """A ticket for the department: everything its handler needs to act without gridcall's UI."""

    ticket_id: str = Field(description="the id to answer with (inbound updates name it)")
    case_id: str
    unit_id: str
    category: str
    attributes: dict[str, Any] = Field(description="the category's questions and the resident's answers")
    description: str
    address: str | None
    grid_id: str
    location: Location | None
    media_urls: list[str]
    priority: Priority
    tier: Tier
    role: Role = Field(description="lead, or co (a co-handler summoned by a whistle)")
    response_due: datetime = Field(description="claim (accepted) before this")
    resolution_due: datetime = Field(description="resolve before this")
    reporters: int = Field(description="how many residents reported this problem")
    arrived_because: str | None = Field(description="why it came to this unit, if it did not start here")
    contact: dict[str, str] | None = Field(
        description="the resident's name and phone: only for units configured to receive them (adapter.contact)"
    )


class UnassignedData(BaseModel):
    """The case moved away (escalated, returned, reassigned, cancelled): stop working the ticket."""

    ticket_id: str
    case_id: str
    unit_id: str
    reason: str


class ReopenedData(BaseModel):
    """The resident was not satisfied with this unit's resolution: a new assignment follows."""

    case_id: str
    unit_id: str
    comment: str


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured mode (application/cloudevents+json)."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="unique per message and stable across retries: also the webhook-id")
    # type before source, as gridcall's own envelopes are written: the relay reads it for the ce_type header
    type: str = Field(description="gridcall.case.assigned | gridcall.case.unassigned | gridcall.case.reopened")
    source: str = SOURCE
    subject: str = Field(description="the case id: messages of one case arrive in order")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: AssignmentData | UnassignedData | ReopenedData


class UpdateType(StrEnum):
    ACCEPTED = "accepted"  # claims the ticket
    PROGRESS = "progress"  # a public note for the resident
    RESOLVED = "resolved"  # resolves it; a note is required
    REJECTED = "rejected"  # returns it (退单) with a reason code


Note = Annotated[str, Field(min_length=1, max_length=4000), WORDS]
Link = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


# What each type of update must carry besides the ticket and the handler.
REQUIRED: dict[UpdateType, tuple[str, ...]] = {
    UpdateType.PROGRESS: ("note",),
    UpdateType.RESOLVED: ("note",),
    UpdateType.REJECTED: ("reason_code", "note"),
}


class Update(BaseModel):
    """What the department's system says about a ticket: the same body on the inbound
    endpoint and on the updates topic."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind.value}}},
                    "then": {"required": list(fields), "properties": {f: {"not": {"type": "null"}} for f in fields}},
                }
                for kind, fields in REQUIRED.items()
            ]
        },
    )
    ticket_id: str = Field(min_length=1, max_length=64)
    type: UpdateType
    note: Note | None = Field(None, description="required for progress and resolved; the reason for rejected")
    evidence_urls: list[Link] = Field(default=[], max_length=10)
    reason_code: ReturnReason | None = Field(None, description="required for rejected")
    handler: Annotated[str, Field(min_length=1, max_length=200), WORDS] = Field(
        description="the person on the department's side, recorded as who acted"
    )

    def missing(self) -> str | None:
        """The first field this type of update requires and lacks (REQUIRED), if any."""
        return next((f for f in REQUIRED.get(self.type, ()) if getattr(self, f) is None), None)


def assignment(event: CaseAssigned, reporters: int, contact: dict[str, str] | None) -> AssignmentData:
    details = event.details
    return AssignmentData(
        ticket_id=event.assignment_id,
        case_id=event.case_id,
        unit_id=event.unit_id,
        category=event.category,
        attributes=details.get("attributes") or {},
        description=event.description,
        address=details.get("address"),
        grid_id=event.grid_id,
        location=event.location,
        media_urls=[str(u) for u in details.get("media_urls") or []],
        priority=event.priority,
        tier=event.tier,
        role=event.role,
        response_due=event.response_due,
        resolution_due=event.resolution_due,
        reporters=reporters,
        arrived_because=event.reason or None,
        contact=contact,
    )


def unassigned(event: CaseUnassigned) -> UnassignedData:
    return UnassignedData(
        ticket_id=event.assignment_id, case_id=event.case_id, unit_id=event.unit_id, reason=event.reason
    )


def reopened(event: CaseReopened) -> ReopenedData:
    return ReopenedData(case_id=event.case_id, unit_id=event.unit_id, comment=event.comment)
