"""The staff API's request and response models: a ticket as its handler sees it, a queue and
its summary, who the caller is, a pool member's record, the staff accounts, and the bodies of
the actions on a ticket. The adapters' inbound endpoint answers with the same `Ticket`."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, field_validator

from departments.domain import TicketStatus
from departments.usecases.staff import DEFAULT_DAYS, StaffRole
from services.district.events import Location, NoteVisibility, Reach, ReturnReason
from services.district.text import EMAIL_PATTERN, PHONE_PATTERN, WORDS, Identifier


class Person(BaseModel):
    staff_id: str | None
    name: str


class Note(BaseModel):
    note_id: int
    visibility: str = Field(description="internal (staff and ops) or public (also the resident's)")
    text: str
    by: Person | None
    at: datetime


class CaseNote(Note):
    unit_id: str = Field(description="the unit whose ticket the note was written on")


class Evidence(BaseModel):
    url: str
    caption: str
    by: Person | None
    at: datetime


class Clock(BaseModel):
    name: str | None = Field(description="the clock running now: response while open, resolution once claimed")
    due: datetime | None
    seconds_left: float | None = Field(description="negative once the limit has passed")


class Ticket(BaseModel):
    ticket_id: str
    case_id: str
    unit_id: str
    tier: str
    role: str
    priority: str
    category: str
    description: str
    details: dict[str, Any] = Field(description="address, category attributes and media the resident gave")
    reporters: int = Field(description="how many residents reported this problem")
    grid_id: str
    location: Location | None = Field(description="where the resident reported it; null on older tickets")
    status: TicketStatus
    claimed_by: Person | None
    claimed_at: datetime | None
    resolved_by: Person | None
    resolved_at: datetime | None
    note: str | None = Field(description="the result, written for the resident")
    arrived_because: str | None = Field(description="why the case came to this unit, if it did not start here")
    handover_reason: str | None = Field(description="why it left this unit (escalated, returned, withdrawn…)")
    contact: dict[str, str] | None = Field(
        description="the resident's name and phone for a call-back: shown to the handling unit's staff only"
    )
    notes: list[Note]
    evidence: list[Evidence]
    case_notes: list[CaseNote] = Field(description="public notes written on the case's earlier tickets")
    response_due: datetime
    resolution_due: datetime
    response_left_seconds: float
    resolution_left_seconds: float
    clock: Clock
    late: bool
    created_at: datetime
    allowed_actions: list[str] = Field(
        description="what this caller may do to the ticket now, as the action routes are named "
        "(claim, unclaim, note, evidence, resolve, escalate, return, whistle, reassign): "
        "a page shows only these"
    )


class Queue(BaseModel):
    tickets: list[Ticket]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class Summary(BaseModel):
    unit_id: str
    counts: dict[str, int] = Field(description="tickets per status")
    to_do: int = Field(description="open and claimed")
    late: int = Field(description="open or claimed past the limit running now")


class UnitRef(BaseModel):
    # Intake's API has a UnitRef too: the embedded app's OpenAPI document tells the two apart by
    # module, and publishes this one as departments__api__UnitRef, its home before schemas.py.
    __module__ = "departments.api"

    unit_id: str
    name: str
    kind: str


class Record(BaseModel):
    pool_id: str
    staff_id: str
    name: str
    completed: int
    tickets: list[Ticket]


class StaffReach(BaseModel):
    """How a person is told what happens to the tickets they hold (an SLA warning, a breach, a
    reopening of the case), besides their unit's duty address. Nothing is sent on a channel
    left out of `channels`."""

    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(None, max_length=254, pattern=EMAIL_PATTERN)
    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    language: Literal["zh-CN", "en"] = Field("zh-CN", description="the messages' language: zh-CN or en")
    channels: list[Literal["email", "sms"]] = Field(
        default_factory=list, max_length=2, description="the channels chosen, each needing its address"
    )

    def reach(self) -> Reach:
        return Reach(email=self.email, phone=self.phone, language=self.language, channels=tuple(self.channels))


class Me(BaseModel):
    staff_id: str | None
    name: str
    role: str = Field(description="handler, supervisor or ops")
    unit_id: str | None
    unit_name: str | None
    unit_kind: str | None
    units: list[UnitRef] = Field(description="the units whose tickets this person may see")
    reach: StaffReach | None = Field(
        None, description="how this person hears of the tickets they hold (PUT /v1/me/reach); null for ops"
    )


class StaffAccount(BaseModel):
    staff_id: str
    unit_id: str
    name: str
    role: StaffRole
    created_at: datetime
    revoked_at: datetime | None
    email: str | None
    phone: str | None
    language: str
    channels: list[str]

    @field_validator("channels", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value


class NewStaff(StaffReach):
    unit_id: Identifier = Field(description="the person's unit; a pool's id for a pool member")
    name: Annotated[str, Field(min_length=1, max_length=200), WORDS]
    role: StaffRole = StaffRole.HANDLER
    days: int = Field(DEFAULT_DAYS, ge=1, le=3650, description="days until the token expires")


class IssuedStaff(StaffAccount):
    token: str = Field(description="the person's bearer token; shown once")


Text = Annotated[str, Field(min_length=1, max_length=4000), WORDS]
Caption = Annotated[str, Field(min_length=1, max_length=500), WORDS]
Link = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(description="what was done, for the resident")


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why the case needs the tier above")


class Return(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason_code: ReturnReason
    reason: Text
    suggested_unit_id: Identifier | None = Field(None, description="the unit that should handle it, if known")


class Whistle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead: Identifier = Field(description="the department that leads")
    co: list[Identifier] = Field(default=[], max_length=10, description="departments that co-handle")
    reason: Text


class NewNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text
    visibility: NoteVisibility = Field(
        NoteVisibility.INTERNAL, description="public notes show in the resident's timeline and Open311 status_notes"
    )


class NewEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Link = Field(description="an http or https link to a photo or document")
    caption: Caption


class Reassignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: Identifier = Field(description="a unit in the supervisor's subtree")
    reason: Text
