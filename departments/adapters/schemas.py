"""The adapters' HTTP models: the ops view of webhook deliveries and of each unit's adapter.
(What a department's system sends and receives is departments/adapters/messages.py; the inbound
endpoint answers with the staff API's Ticket, departments/schemas.py.)"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

State = Literal["pending", "delivered", "dead"]


class Delivery(BaseModel):
    # The notifier's API has a Delivery too: the embedded app's OpenAPI document tells the two apart
    # by module, and publishes this one as departments__adapters__ops__Delivery, its home before.
    __module__ = "departments.adapters.ops"

    id: int
    msg_id: str = Field(description="the CloudEvent id and webhook-id: the same on every attempt")
    unit_id: str
    case_id: str
    event_type: str
    state: State
    attempts: int
    next_attempt_at: datetime | None = Field(description="when it is tried next (pending only)")
    last_status: int | None = Field(description="the HTTP status of the last answer; none if there was no answer")
    last_error: str | None = Field(description="what went wrong last (no answer, HTTP 503…)")
    created_at: datetime
    delivered_at: datetime | None


class Deliveries(BaseModel):
    count: int
    deliveries: list[Delivery]


class AdapterState(BaseModel):
    unit_id: str
    webhook: bool = Field(description="assignments are POSTed to the unit's url")
    kafka: bool = Field(description="assignments are published on the unit's topic")
    enabled: bool = Field(description="false once the unit's system answered 410 Gone; its deliveries wait")
    disabled_at: datetime | None
    disabled_because: str | None
    pending: int
    dead: int


class Redriven(BaseModel):
    redriven: int = Field(description="dead deliveries put back to pending")
