"""A service's transactions: its state change and the events it emits, written together.

`Store.transaction()` gives a handler a session and `Tx.emit`; the emitted envelopes go into the
service's outbox in the same transaction as the state change, and the `Relay` publishes them
after the commit (services/messaging/relay.py). Nothing is published inside the transaction."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    Table,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.district.clock import Clock
from services.district.events import Event, Stream
from services.messaging.bus import Message
from services.messaging.envelope import EVENT_TYPES, Envelope
from services.messaging.parking import Parking
from services.runtime.metrics import Metrics
from services.storage.bulk import insert_new, insert_rows
from services.storage.db import Database

T = TypeVar("T")


@dataclass
class Tx:
    """One open transaction of a service: its session, the events it will emit, and what its
    handlers gather to write together (see `pending`)."""

    session: AsyncSession
    store: "Store"
    emitted: list[Envelope] = field(default_factory=list)
    raw: list[Message] = field(default_factory=list)
    _pending: dict[object, Any] = field(default_factory=dict)
    _flushes: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def emit(self, event: Event) -> Envelope:
        envelope = Envelope.wrap(event, source=self.store.source, time=self.store.clock.now())
        self.emitted.append(envelope)
        return envelope

    def emit_raw(self, topic: str, key: str, payload: bytes) -> None:
        """A message that is no gridcall event, for a topic of its own (a department's
        assignments topic): relayed from the outbox like every event, after the commit."""
        self.raw.append(Message(topic, key, payload))

    def pending(self, key: object, make: Callable[[], T], flush: Callable[[T], Awaitable[None]]) -> T:
        """A per-transaction accumulator shared by every handler of a batch: made by `make` on
        first use and written by `flush` once, just before the outbox rows and the commit, in
        the order of first use. So the rows of fifty events become one multi-row statement."""
        if key not in self._pending:
            value = self._pending[key] = make()
            self._flushes.append(lambda: flush(value))
        return self._pending[key]  # type: ignore[no-any-return]

    async def flush(self) -> None:
        """Write what `pending` gathered; the transaction does it before commit."""
        while self._flushes:
            await self._flushes.pop(0)()

    async def first_time(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """The ids among `event_ids` that `consumer` had not handled before: their inbox rows go
        in now, with one insert that skips those already there (a concurrent transaction
        inserting the same one is waited for), stamped with the clock's time, from which the
        inbox's horizon counts (services/storage/pruning.py)."""
        now = self.store.clock.now()
        rows = [{"consumer": consumer, "event_id": e, "handled_at": now} for e in event_ids]
        return await insert_new(self.session, self.store.inbox, rows, key="event_id")


class Store:
    """A service's database access: its transactions, its outbox, its inbox and its parked records."""

    def __init__(
        self,
        db: Database,
        *,
        source: str,
        outbox: Table,
        inbox: Table,
        deadletters: Table,
        clock: Clock,
        topic: Callable[[Stream], str],
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or Metrics()
        self.source = source
        self.outbox = outbox
        self.inbox = inbox
        self.deadletters = deadletters
        self.parking = Parking(db, deadletters, clock)
        self.clock = clock
        self.topic = topic
        self.outbox_written = asyncio.Event()
        self.service = source.strip("/")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.db.sessions() as session:
            async with session.begin():
                tx = Tx(session, self)
                yield tx
                await tx.flush()
                written = await self.write_outbox(session, tx.emitted, tx.raw)
            if written:
                self.outbox_written.set()

    async def write_outbox(
        self, session: AsyncSession, envelopes: Sequence[Envelope], raw: Sequence[Message] = ()
    ) -> bool:
        """Put events in the outbox in `session`'s transaction (the relay publishes them after its
        commit); for work outside `transaction()` that emits, such as a delivery worker's hook."""
        rows = [
            {"topic": self.topic(EVENT_TYPES[e.type].stream), "key": e.subject, "payload": e.encode()}
            for e in envelopes
        ] + [{"topic": m.topic, "key": m.key, "payload": m.value} for m in raw]
        if rows:
            await insert_rows(session, self.outbox, rows)
        return bool(rows)
