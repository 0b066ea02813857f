"""The notifier's API in types: a case's notifications with their deliveries, and the ops
listing of deliveries."""

from datetime import datetime

from pydantic import BaseModel, Field

from notifier.messages import Audience
from services.delivery.tables import State


class Delivery(BaseModel):
    # Named after its first home: the embedded app's OpenAPI document tells it from the
    # departments' Delivery by module, as notifier__api__Delivery.
    __module__ = "notifier.api"

    id: int
    channel: str = Field(description="email, sms, webhook or log")
    destination: str = Field(description="the email address or phone number; webhook or log")
    state: State
    attempts: int
    reason: str | None = Field(description="the last error, or why it is held or was suppressed")


class Notification(BaseModel):
    id: int
    case_id: str | None = Field(description="none for a unit's digest of new tickets")
    audience: Audience
    recipient: str = Field(
        description="follower:<report id> (a resident), case:<id> (a case nobody follows), unit:<id>, ops"
    )
    kind: str = Field(description="what happened, e.g. case.assigned, ticket.new, ops.supervision")
    language: str
    subject: str
    message: str
    created_at: datetime
    deliveries: list[Delivery] = Field(description="one per channel that reaches the recipient")


class NotificationDelivery(BaseModel):
    """One delivery as ops see it."""

    id: int
    msg_id: str = Field(description="the message's id: webhook-id, Message-ID, the SMS out-id")
    channel: str
    destination: str
    case_id: str | None
    kind: str
    state: State
    attempts: int
    next_attempt_at: datetime | None = Field(description="when it is tried next, while it waits")
    reason: str | None
    last_status: int | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[NotificationDelivery]
    next_cursor: str | None = Field(description="pass as cursor for the next page; none at the end")
