"""The wire: every event travels in a CloudEvents 1.0 envelope (structured mode, JSON), with
gridcall's schema version; `EVENT_TYPES` names the contract (services/district/events.py) each
type decodes to. Records are keyed by case id, so all events of one case share a partition and
arrive in order."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from services.district.events import (
    CHECKED,
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseContactGiven,
    CaseDuplicateReported,
    CaseEscalated,
    CaseFollowed,
    CaseHandlerReported,
    CaseHolderChanged,
    CaseNoted,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseReturned,
    CaseSatisfactionAnswered,
    CaseSlaBreached,
    CaseSlaWarning,
    CaseUnassigned,
    CaseUnclaimed,
    CaseWhistled,
    DeliveryFailed,
    Event,
    StaffRevoked,
    TicketClaimed,
    TicketEscalated,
    TicketNoted,
    TicketReassigned,
    TicketResolved,
    TicketReturned,
    TicketUnclaimed,
    TicketWhistled,
    storable,
)
from services.district.text import plainly_storable_json

SCHEMA_VERSION = 1


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        CaseReported,
        CaseContactGiven,
        CaseFollowed,
        CaseHolderChanged,
        StaffRevoked,
        CaseSatisfactionAnswered,
        CaseDuplicateReported,
        CaseCancelRequested,
        CaseCancelRefused,
        CaseAssigned,
        CaseUnassigned,
        CaseClaimed,
        CaseHandlerReported,
        CaseResolved,
        CaseClosed,
        CaseReopened,
        CaseSlaWarning,
        CaseSlaBreached,
        CaseEscalated,
        CaseReturned,
        CaseWhistled,
        CaseUnclaimed,
        CaseNoted,
        DeliveryFailed,
        TicketClaimed,
        TicketUnclaimed,
        TicketNoted,
        TicketResolved,
        TicketEscalated,
        TicketReturned,
        TicketWhistled,
        TicketReassigned,
    )
}


class UnknownEvent(ValueError):
    """A record that is not a gridcall event this code knows: its consumer parks it as a dead letter."""


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

    _storable = model_validator(mode="before")(staticmethod(storable))

    @classmethod
    def wrap(cls, event: Event, *, source: str, time: datetime) -> "Envelope":
        """The envelope of an event this service emits. Built without validating again: the
        event was validated when it was made (storable text included), and the other fields
        are this service's own; `decode` still validates every envelope read from the bus."""
        return cls.model_construct(
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
        return cls.model_validate(self.data, context=CHECKED)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Envelope":
        try:
            return cls.model_validate_json(raw, context=CHECKED if plainly_storable_json(raw) else None)
        except ValidationError as exc:
            raise UnknownEvent(f"not a gridcall envelope: {exc}") from None
