"""What the departments consumer hands to units' own systems: each assignment, unassignment
and reopening of a unit with an adapter becomes one CloudEvent, written in the consumer's
transaction as a webhook delivery (sent after commit by the kernel's delivery worker, through
departments/adapters/workers.py) and/or an outbox record for the unit's assignments topic
(relayed like every event)."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from departments.adapters.messages import CloudEvent
from departments.adapters.workers import CHANNEL
from departments.tables import contacts, deliveries
from services.delivery.tables import State
from services.district.jurisdiction import Adapter, Jurisdiction
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx
from services.storage.bulk import insert_new

_MESSAGE_IDS = uuid.UUID("5d0c3f7e-7a8e-4b8a-9a4c-2f1c6b0e9d11")


def message_id(event_id: str, unit_id: str) -> str:
    """The CloudEvent id (and webhook-id) of what one consumed event tells one unit: derived,
    so a redelivered event makes the same message, never a second one."""
    return "msg_" + uuid.uuid5(_MESSAGE_IDS, f"{event_id}/{unit_id}").hex


@dataclass(frozen=True)
class Outbound:
    """The units with adapters, and where each one's messages go."""

    adapters: dict[str, Adapter]
    topic: Callable[[str], str]  # unit id -> its assignments topic
    first_delay: float = 0.0  # seconds before a webhook delivery's first attempt (the schedule's first entry)

    @classmethod
    def of(cls, j: Jurisdiction, topic_prefix: str, first_delay: float = 0.0) -> "Outbound":
        return cls(
            {u.id: u.adapter for u in j.units if u.adapter is not None},
            lambda unit_id: assignments_topic(topic_prefix, unit_id),
            first_delay,
        )

    def topics(self) -> list[str]:
        return [self.topic(u) for u, a in sorted(self.adapters.items()) if a.kafka]


def assignments_topic(topic_prefix: str, unit_id: str) -> str:
    return f"{topic_prefix}.dept.{unit_id}.assignments"


@dataclass
class Deliveries:
    """The webhook deliveries of one batch, inserted in one statement before commit; a message
    id already there (the event came again) is skipped."""

    session: AsyncSession
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def write(self) -> None:
        await insert_new(self.session, deliveries, self.rows, "msg_id")


def send(tx: Tx, out: Outbound, envelope: Envelope, unit_id: str, data: Any, at: datetime) -> None:
    """Hand one message for `unit_id` to its webhook and/or its topic."""
    adapter = out.adapters[unit_id]
    msg_id = message_id(envelope.id, unit_id)
    body = CloudEvent(id=msg_id, type=envelope.type, subject=envelope.subject, time=envelope.time, data=data)
    payload = body.model_dump_json().encode()
    if adapter.url is not None:
        batch = tx.pending(Deliveries, partial(Deliveries, tx.session), Deliveries.write)
        batch.rows.append(
            {
                "msg_id": msg_id,
                "channel": CHANNEL,
                "destination": unit_id,
                "case_id": envelope.subject,
                "sequence": f"{unit_id}/{envelope.subject}",  # a case's messages to a unit go out in order
                "kind": envelope.type,
                "body": payload.decode(),
                "state": State.CREATED,
                "attempts": 0,
                "next_attempt_at": at + timedelta(seconds=out.first_delay),
                "reason": None,
                "last_status": None,
                "provider_ref": None,
                "created_at": at,
                "delivered_at": None,
            }
        )
    if adapter.kafka:
        tx.emit_raw(out.topic(unit_id), envelope.subject, payload)


async def contact_of(tx: Tx, case_id: str, known: dict[str, dict[str, str]]) -> dict[str, str] | None:
    """The resident's call-back contact: from this batch, else as kept for the case."""
    if case_id in known:
        return known[case_id]
    found = await tx.session.scalar(select(contacts.c.contact).where(contacts.c.case_id == case_id))
    return dict(found) if found else None
