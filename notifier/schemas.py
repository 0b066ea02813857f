"""The notifier's ops API in types: a case's notifications, each with its deliveries."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from notifier.domain import Audience


class Delivery(BaseModel):
    # Named after its first home: the embedded app's OpenAPI document tells it from the
    # departments' Delivery by module, as notifier__api__Delivery.
    __module__ = "notifier.api"

    channel: str = Field(description="e.g. log, webhook")
    status: Literal["pending", "delivered", "failed"] = Field(description="failed: given up after the last retry")
    attempts: int


class Notification(BaseModel):
    id: int
    case_id: str
    audience: Audience
    recipient: str = Field(description="case:<id> for the resident, unit:<id> for staff, ops")
    kind: str = Field(description="what happened, e.g. case.assigned, ticket.new, case.sla_breached")
    message: str
    created_at: datetime
    deliveries: list[Delivery] = Field(description="one per channel")
