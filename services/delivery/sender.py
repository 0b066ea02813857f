"""What a channel implements: `send` one delivery and say what came of it. The worker turns the
outcome into the row's next state; a sender never touches the table."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    DELIVERED = "delivered"  # the receiver has it
    ACCEPTED = "accepted"  # a provider took it; its receipt will say delivered or failed
    TEMPORARY = "temporary"  # not now: tried again on the schedule (or after retry_after)
    PERMANENT = "permanent"  # can never succeed as it is (a bad address, an unknown template)
    AMBIGUOUS = "ambiguous"  # no answer after the request left: it may have gone; wait for the receipt
    GONE = "gone"  # the destination asks us to stop (HTTP 410): its deliveries wait for ops


@dataclass(frozen=True)
class Item:
    """One delivery as the worker hands it to a sender."""

    id: int
    msg_id: str
    channel: str
    destination: str
    case_id: str | None
    kind: str
    body: str
    attempts: int  # attempts before this one


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: str | None = None  # why, in words for ops (never the message's text)
    status: int | None = None  # the receiver's answer code, if any
    retry_after: float | None = None  # seconds the receiver asked us to wait
    provider_ref: str | None = None  # the provider's id for the message, for receipts


class Sender(Protocol):
    channel: str
    # True where a resend after an unknown outcome (a crash mid-send, a timeout) is safe because
    # the receiver deduplicates by msg_id (webhooks: webhook-id; email: Message-ID). False for
    # SMS: such a delivery waits for its receipt and is never sent again blindly.
    resend_unknown: bool

    async def send(self, item: Item) -> Result: ...

    async def close(self) -> None: ...
