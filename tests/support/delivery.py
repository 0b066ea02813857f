"""The kernel's delivery worker in tests: a deliveries table of the test's own, rows for it, and
a Sender that answers what its script says."""

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, Table

from services.delivery.sender import Item, Outcome, Result
from services.delivery.tables import State, delivery_table
from services.storage.db import Database

DELIVERED = Result(Outcome.DELIVERED, status=200)


class Scripted:
    """A Sender that answers each message with the next result its script has for it (then
    delivered), recording what it was given. While `gate` is set to an unset event, every
    send waits for it: a send in flight, to look at (or to kill the worker in)."""

    def __init__(self, channel: str = "sms", *, resend_unknown: bool = False, **script: list[Result]) -> None:
        self.channel = channel
        self.resend_unknown = resend_unknown
        self.script = script
        self.sent: list[str] = []
        self.items: list[Item] = []
        self.gate: asyncio.Event | None = None
        self.pause = 0.0  # seconds each send takes
        self.closed = 0

    async def send(self, item: Item) -> Result:
        self.sent.append(item.msg_id)
        self.items.append(item)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.pause)
        waiting = self.script.get(item.msg_id)
        return waiting.pop(0) if waiting else DELIVERED

    async def close(self) -> None:
        self.closed += 1


async def deliveries_of_its_own(db: Database) -> Table:
    """A deliveries table under a fresh prefix, made in `db`."""
    metadata = MetaData()
    table = delivery_table(metadata, f"t{uuid.uuid4().hex[:10]}")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return table


def row(msg_id: str, at: datetime, *, channel: str = "sms", to: str = "+8613800000001", **more: Any) -> dict[str, Any]:
    return {
        "msg_id": msg_id,
        "channel": channel,
        "destination": to,
        "case_id": more.pop("case_id", "C1"),
        "sequence": more.pop("sequence", None),
        "kind": "case.resolved",
        "body": f'{{"text": "message {msg_id}"}}',
        "state": State.CREATED,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
        **more,
    }


async def insert(db: Database, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    async with db.transaction() as s:
        await s.execute(table.insert(), list(rows))


async def rows_of(db: Database, table: Table) -> dict[str, Any]:
    """Every row, by msg_id."""
    async with db.sessions() as s:
        return {r.msg_id: r for r in (await s.execute(table.select().order_by(table.c.id))).all()}


async def states(db: Database, table: Table) -> dict[str, tuple[str, int]]:
    return {m: (r.state, r.attempts) for m, r in (await rows_of(db, table)).items()}
