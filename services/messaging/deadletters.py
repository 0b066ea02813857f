"""Dead letters for ops: what the consumers of a process parked, and putting it back.

The same functions serve the ops endpoints (services/web/deadletters.py, on every service,
registered once per app: in embedded mode one app covers all four services' consumers) and
`gridcall deadletter`.
"""

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from services.messaging.consumer import Consumer


class UnknownConsumer(LookupError):
    pass


class DeadLetter(BaseModel):
    id: int
    consumer: str
    event_id: str | None = Field(description="absent when the payload is not a gridcall event")
    event_type: str | None
    case_id: str = Field(description="the event's case, else the record's key")
    source_topic: str
    source_partition: int
    source_offset: int
    error: str = Field(description="the last error, truncated")
    attempts: int = Field(description="how many times handling it failed")
    parked_at: datetime = Field(description="when it last failed")


class DeadLetters(BaseModel):
    count: int
    deadletters: list[DeadLetter]


class RedriveResult(BaseModel):
    id: int
    consumer: str
    event_id: str | None
    handled: bool = Field(description="handled and removed; else kept with the new error")
    error: str | None


class Redrive(BaseModel):
    handled: int
    failed: int
    remaining: int = Field(description="records still parked by these consumers")
    results: list[RedriveResult]


def choose(consumers: Sequence[Consumer], name: str | None) -> list[Consumer]:
    """All consumers, or the one named (its full name, or its service's name)."""
    if name is None:
        return list(consumers)
    chosen = [c for c in consumers if name in (c.name, c.name.rpartition(".")[2])]
    if not chosen:
        known = ", ".join(c.name for c in consumers) or "none"
        raise UnknownConsumer(f"no consumer {name!r}; consumers: {known}")
    return chosen


async def counts(consumers: Sequence[Consumer]) -> dict[str, int]:
    return {c.name: await c.store.parking.count_parked(c.name) for c in consumers}


async def list_parked(consumers: Sequence[Consumer], name: str | None = None) -> DeadLetters:
    found = [
        DeadLetter.model_validate(row, from_attributes=True)
        for c in choose(consumers, name)
        for row in await c.store.parking.parked(c.name)
    ]
    return DeadLetters(count=len(found), deadletters=found)


async def redrive(consumers: Sequence[Consumer], name: str | None = None, event_id: str | None = None) -> Redrive:
    chosen = choose(consumers, name)
    results = [
        RedriveResult(id=r.parked_id, consumer=c.name, event_id=r.event_id, handled=r.handled, error=r.error)
        for c in chosen
        for r in await c.redrive(event_id)
    ]
    handled = sum(r.handled for r in results)
    remaining = sum((await counts(chosen)).values())
    return Redrive(handled=handled, failed=len(results) - handled, remaining=remaining, results=results)
