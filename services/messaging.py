"""Outbox, inbox and the consumer loop: how every service changes state and talks.

- A service changes its tables and records the events it emits in ONE transaction
  (`Store.transaction()` + `Tx.emit`); the `Relay` later publishes outbox rows to the bus
  and deletes them. Nothing is published inside the transaction, nothing after commit.
- A `Consumer` handles a batch of records in one transaction that also inserts each one's
  `(consumer, event id)` into the inbox, so a redelivered event changes nothing; if one
  record fails, the batch is taken again one record per transaction. Bus offsets are
  committed only after the effects are.
- A record that cannot be handled (bad payload, a bug) is parked on the dead-letter topic
  with the error; a transient failure (database or broker away) is retried until it passes.
"""

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from services.bus import Bus, Message, Record
from services.clock import Clock
from services.db import Database, UtcDateTime
from services.events import EVENT_TYPES, Envelope, Event, Stream, UnknownEvent
from services.lifecycle import Stop
from services.text import printable

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# PostgreSQL's "try again" states: deadlock, serialization failure, lock and statement timeouts.
RETRY_STATES = {"40P01", "40001", "55P03", "57014"}


def transient(exc: BaseException) -> bool:
    """A failure that says nothing about the work itself: doing it again later can succeed."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRY_STATES


def outbox_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
    )


def inbox_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("handled_at", UtcDateTime(), nullable=False, server_default=func.now()),
    )


@dataclass
class Tx:
    """One open transaction of a service: its session and the events it will emit."""

    session: AsyncSession
    store: "Store"
    emitted: list[Envelope] = field(default_factory=list)

    def emit(self, event: Event) -> Envelope:
        envelope = Envelope.wrap(event, source=self.store.source, time=self.store.clock.now())
        self.emitted.append(envelope)
        return envelope


class Store:
    """A service's database access: its transactions, its outbox and its inbox."""

    def __init__(
        self,
        db: Database,
        *,
        source: str,
        outbox: Table,
        inbox: Table,
        clock: Clock,
        topic: Callable[[Stream], str],
    ) -> None:
        self.db = db
        self.source = source
        self.outbox = outbox
        self.inbox = inbox
        self.clock = clock
        self.topic = topic
        self.outbox_written = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.db.sessions() as session:
            async with session.begin():
                tx = Tx(session, self)
                yield tx
                if tx.emitted:
                    await session.execute(
                        self.outbox.insert(),
                        [
                            {
                                "topic": self.topic(EVENT_TYPES[e.type].stream),
                                "key": e.subject,
                                "payload": e.encode(),
                            }
                            for e in tx.emitted
                        ],
                    )
            if tx.emitted:
                self.outbox_written.set()

    async def seen(self, consumer: str, event_id: str) -> bool:
        async with self.db.sessions() as s:
            row = await s.execute(
                select(self.inbox.c.event_id).where(
                    self.inbox.c.consumer == consumer, self.inbox.c.event_id == event_id
                )
            )
            return row.first() is not None


class Relay:
    """Publishes a service's committed outbox rows, in order, then deletes them."""

    def __init__(self, store: Store, bus: Bus, *, interval: float = 0.2, batch: int = 500) -> None:
        self.store = store
        self.bus = bus
        self.interval = interval
        self.batch = batch
        # Only one relay of a service publishes at a time, so per-case order survives replicas.
        self._lock_id = zlib.crc32(store.outbox.name.encode())

    async def relay_once(self) -> int:
        table = self.store.outbox
        async with self.store.db.transaction() as s:
            if self.store.db.is_postgres:
                if not await s.scalar(select(func.pg_try_advisory_xact_lock(self._lock_id))):
                    return 0
            rows = (await s.execute(select(table).order_by(table.c.id).limit(self.batch))).all()
            if not rows:
                return 0
            await self.bus.publish([Message(r.topic, r.key, r.payload) for r in rows])
            await s.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        return len(rows)

    async def run(self, stop: Stop) -> None:
        backoff = self.interval
        while not stop:
            self.store.outbox_written.clear()
            try:
                sent = await self.relay_once()
                backoff = self.interval
            except Exception as exc:  # database or broker away: keep the rows, try again
                log.warning("outbox relay %s: %r; retrying in %.1fs", self.store.outbox.name, exc, backoff)
                await stop.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self.batch:
                try:
                    await asyncio.wait_for(self.store.outbox_written.wait(), self.interval)
                except TimeoutError:
                    pass


Handler = Callable[[Tx, Envelope, Any], Awaitable[None]]
# Locks, in case-id order, the rows of the cases a batch of events will change: see Consumer.
Lock = Callable[[AsyncSession, list[str]], Awaitable[None]]


@dataclass
class _Work:
    record: Record
    envelope: Envelope
    event: Event
    handler: Handler


class Consumer:
    """Consumes records for one service: a batch of records per transaction with their inbox
    rows, offsets committed after the transaction. If a record of a batch fails, the batch is
    rolled back and taken again one record per transaction, so only the failing record is
    dead-lettered.

    `lock` takes the row locks of a batch's cases in case-id order before anything else, the
    order every other multi-row locker uses (the dispatcher's timer worker), so batches do
    not deadlock with them."""

    def __init__(
        self,
        name: str,
        store: Store,
        bus: Bus,
        handlers: Mapping[type[Event], Handler],
        streams: Sequence[Stream],
        *,
        lock: Lock | None = None,
        batch: int = 100,
    ) -> None:
        self.name = name
        self.store = store
        self.bus = bus
        self.handlers = handlers
        self.topics = [store.topic(s) for s in streams]
        self.lock = lock
        self.batch = batch
        self.after_effect: Callable[[Record], None] | None = None  # a test's crash point

    async def handle(self, record: Record, stop: Stop | None = None) -> bool:
        """Handle one record; False if asked to stop before its effect could be made durable."""
        return await self.handle_batch([record], stop)

    async def handle_batch(self, records: Sequence[Record], stop: Stop | None = None) -> bool:
        """Handle records, in one transaction if they all succeed; False if asked to stop before
        their effects could be made durable. A record that cannot be handled (bad payload, a
        bug) goes to the dead-letter topic without holding up the others; a transient failure
        (database or broker away, a deadlock) is retried until it passes."""
        work: list[_Work] = []
        failed: list[tuple[Record, BaseException]] = []
        for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):  # one order everywhere
            try:
                envelope = Envelope.decode(record.value)
                event = envelope.event()
            except (UnknownEvent, ValueError) as exc:
                failed.append((record, exc))
                continue
            if (handler := self.handlers.get(type(event))) is not None:
                work.append(_Work(record, envelope, event, handler))
        outcome = await self._attempt(work, stop) if len(work) > 1 else None
        if outcome is False:
            return False
        if isinstance(outcome, Exception):
            log.info("%s: a record failed in a batch of %d (%r); taking them one by one", self.name, len(work), outcome)
        if outcome is not True:
            for w in work:  # one transaction per record: find the ones that fail
                alone = await self._attempt([w], stop)
                if alone is False:
                    return False
                if isinstance(alone, IntegrityError) and await self.store.seen(self.name, w.envelope.id):
                    continue  # a concurrent delivery of the same event won
                if isinstance(alone, Exception):
                    log.error("%s: cannot handle %s %s: %r", self.name, w.envelope.type, w.envelope.id, alone)
                    failed.append((w.record, alone))
        for record, error in failed:
            await self.dead_letter(record, error)
        return True

    async def _attempt(self, work: list[_Work], stop: Stop | None) -> bool | Exception:
        """Apply the work in one transaction, retrying transient failures: True once committed,
        False if asked to stop meanwhile, or the error that rolled it back."""
        backoff = 0.1
        while True:
            try:
                await self._apply(work)
                return True
            except Exception as exc:
                if not transient(exc):
                    return exc
                log.warning("%s: transient failure on %d record(s): %s; retrying", self.name, len(work), printable(exc))
            if stop:
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _apply(self, work: list[_Work]) -> None:
        inbox = self.store.inbox
        async with self.store.transaction() as tx:
            if self.lock:
                await self.lock(tx.session, sorted({w.event.case_id for w in work}))
            seen = set(
                (
                    await tx.session.scalars(
                        select(inbox.c.event_id).where(
                            inbox.c.consumer == self.name, inbox.c.event_id.in_([w.envelope.id for w in work])
                        )
                    )
                ).all()
            )
            for w in work:
                if w.envelope.id in seen:
                    continue  # handled before: a redelivery changes nothing
                seen.add(w.envelope.id)
                await tx.session.execute(inbox.insert().values(consumer=self.name, event_id=w.envelope.id))
                await w.handler(tx, w.envelope, w.event)

    async def dead_letter(self, record: Record, error: BaseException) -> None:
        await self.bus.publish(
            [
                Message(
                    self.store.topic(Stream.DEADLETTER),
                    record.key,
                    record.value,
                    {
                        "consumer": self.name,
                        "error": f"{type(error).__name__}: {error}"[:2000],
                        "source_topic": record.topic,
                        "source_partition": str(record.partition),
                        "source_offset": str(record.offset),
                    },
                )
            ]
        )

    async def run(self, stop: Stop) -> None:
        sub = self.bus.subscribe(self.name, self.topics)
        await sub.start()
        try:
            while not stop:
                batch = await sub.fetch(timeout=0.25, max_records=self.batch)
                if not batch or not await self.handle_batch(batch, stop):
                    continue
                for record in batch:
                    if self.after_effect:
                        self.after_effect(record)
                await sub.commit(batch)
        finally:
            await sub.stop()
