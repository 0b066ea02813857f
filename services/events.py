"""Event contracts: every message on the bus is one of these, in a CloudEvents envelope.

Records are keyed by case id, so all events of one case share a partition and arrive in order.
"""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1


class Stream(StrEnum):
    CASES = "cases"
    TICKETS = "tickets"
    DEADLETTER = "deadletter"


class Tier(StrEnum):
    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    BUREAU = "bureau"


class Priority(StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Location(BaseModel):
    model_config = ConfigDict(frozen=True)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Event(BaseModel):
    """The data of one event. Subclasses name their CloudEvents type and their stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: ClassVar[str]
    stream: ClassVar[Stream]
    case_id: str


class CaseReported(Event):
    type = "gridcall.case.reported"
    stream = Stream.CASES
    category: str
    description: str
    location: Location
    grid_id: str
    priority: Priority = Priority.NORMAL
    channel: str = "app"


class CaseAssigned(Event):
    type = "gridcall.case.assigned"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    unit_name: str
    tier: Tier
    category: str
    description: str
    grid_id: str


class CaseClaimed(Event):
    type = "gridcall.case.claimed"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str


class CaseResolved(Event):
    type = "gridcall.case.resolved"
    stream = Stream.CASES
    assignment_id: str
    unit_id: str
    note: str


class TicketClaimed(Event):
    type = "gridcall.ticket.claimed"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str


class TicketResolved(Event):
    type = "gridcall.ticket.resolved"
    stream = Stream.TICKETS
    ticket_id: str
    unit_id: str
    note: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        CaseReported,
        CaseAssigned,
        CaseClaimed,
        CaseResolved,
        TicketClaimed,
        TicketResolved,
    )
}


class UnknownEvent(ValueError):
    """A record that is not a gridcall event this code knows: it goes to the dead-letter topic."""


class Envelope(BaseModel):
    """CloudEvents 1.0 structured-mode envelope, plus gridcall's schema version."""

    model_config = ConfigDict(frozen=True)
    specversion: Literal["1.0"] = "1.0"
    id: str
    type: str
    source: str
    time: datetime
    subject: str
    schemaversion: int = SCHEMA_VERSION
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event, *, source: str, time: datetime) -> "Envelope":
        return cls(
            id=str(uuid.uuid4()),
            type=event.type,
            source=source,
            time=time,
            subject=event.case_id,
            data=event.model_dump(mode="json"),
        )

    def event(self) -> Event:
        try:
            cls = EVENT_TYPES[self.type]
        except KeyError:
            raise UnknownEvent(f"unknown event type {self.type!r}") from None
        return cls.model_validate(self.data)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Envelope":
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise UnknownEvent(f"not a gridcall envelope: {exc}") from None
