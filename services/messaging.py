"""Outbox, inbox and the consumer loop: how every service changes state and talks.

- A service changes its tables and records the events it emits in ONE transaction
  (`Store.transaction()` + `Tx.emit`); the `Relay` later publishes outbox rows to the bus
  and deletes them. Nothing is published inside the transaction, nothing after commit.
- A `Consumer` handles a batch of records in one transaction that also inserts each one's
  `(consumer, event id)` into the inbox, so a redelivered event changes nothing; if one
  record fails, the batch is taken again one record per transaction. Bus offsets are
  committed only after the effects are.
- A record that cannot be handled (bad payload, a bug) is parked in the service's dead-letter
  table with the error, until ops re-drive it; a transient failure (database or broker away)
  is retried until it passes.
"""

import asyncio
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.bulk import insert_new, insert_rows
from services.bus import Bus, Message, Record
from services.clock import Clock
from services.db import Database, UtcDateTime
from services.events import EVENT_TYPES, Envelope, Event, Stream, UnknownEvent
from services.lifecycle import Stop
from services.logs import about
from services.metrics import Metrics
from services.retry import Stopped, always, retry

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def deadletter_table(metadata: MetaData, prefix: str) -> Table:
    """Records a consumer could not handle, kept until ops re-drive them; one row per source
    record, so a redelivered poison record counts another attempt instead of another row."""
    return Table(
        f"{prefix}_deadletters",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(200), doc="absent when the payload is not a gridcall event"),
        Column("event_type", String(200)),
        Column("case_id", String(200), nullable=False, doc="the event's subject, else the record's key"),
        Column("payload", LargeBinary, nullable=False),
        Column("source_topic", String(200), nullable=False),
        Column("source_partition", Integer, nullable=False),
        Column("source_offset", BigInteger, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("parked_at", UtcDateTime(), nullable=False),
        UniqueConstraint(
            "consumer", "source_topic", "source_partition", "source_offset", name=f"uq_{prefix}_deadletters_source"
        ),
        Index(f"ix_{prefix}_deadletters_consumer_event", "consumer", "event_id"),
    )


ERROR_LIMIT = 2000


def error_text(error: BaseException) -> str:
    """The error as a column can hold it on any database: NUL-free, truncated."""
    return f"{type(error).__name__}: {error}".replace("\x00", "\\x00")[:ERROR_LIMIT]


def _column_text(text: str) -> str:
    return text.replace("\x00", "\\x00")[:200]


# The CloudEvents Kafka binding's name for the type attribute: the relay sets it on every record
# it publishes, so a consumer skips the events it has no handler for without decoding them.
TYPE_HEADER = "ce_type"
CONTENT_TYPE, STRUCTURED = "content-type", "application/cloudevents+json"
ID_HEADER = "ce_id"
# What `Envelope.encode` writes first: the type is its third attribute, after an id of our own.
_ENCODED_TYPE = re.compile(rb'\{"specversion":"1\.0","id":"[^"\\]*","type":"([^"\\]+)"')


def type_headers(payload: bytes) -> dict[str, str]:
    """The record headers of a CloudEvent in structured mode (an encoded envelope, or a
    department's assignment): its content type, as the CloudEvents Kafka binding asks, and
    its type, read from the first bytes of the payload without decoding it; none if the
    payload does not begin as `encode` writes."""
    found = _ENCODED_TYPE.match(payload)
    return {CONTENT_TYPE: STRUCTURED, TYPE_HEADER: found[1].decode()} if found else {}


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


class Store:
    """A service's database access: its transactions, its outbox and its inbox."""

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
                rows = [
                    {"topic": self.topic(EVENT_TYPES[e.type].stream), "key": e.subject, "payload": e.encode()}
                    for e in tx.emitted
                ] + [{"topic": m.topic, "key": m.key, "payload": m.value} for m in tx.raw]
                if rows:
                    await insert_rows(session, self.outbox, rows)
            if rows:
                self.outbox_written.set()

    async def park(self, consumer: str, record: Record, error: BaseException) -> None:
        """Keep a record the consumer could not handle, with the error; parking the same
        record again counts one more attempt."""
        table = self.deadletters
        try:
            envelope = Envelope.decode(record.value)
            about: dict[str, str | None] = {
                "event_id": envelope.id,
                "event_type": envelope.type,
                "case_id": envelope.subject,
            }
        except ValueError:  # not a gridcall envelope: what its CloudEvents headers say, if any
            about = {
                "event_id": record.headers.get(ID_HEADER),
                "event_type": record.headers.get(TYPE_HEADER),
                "case_id": record.key,
            }
        now = self.clock.now()
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(table).values(
            consumer=consumer,
            **{k: _column_text(v) if v is not None else None for k, v in about.items()},
            payload=record.value,
            source_topic=_column_text(record.topic),
            source_partition=record.partition,
            source_offset=record.offset,
            error=error_text(error),
            attempts=1,
            parked_at=now,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["consumer", "source_topic", "source_partition", "source_offset"],
            set_={"error": insert.excluded.error, "attempts": table.c.attempts + 1, "parked_at": now},
        )
        async with self.db.transaction() as s:
            await s.execute(upsert)

    async def parked(self, consumer: str, event_id: str | None = None) -> Sequence[Row[Any]]:
        """The consumer's parked records, oldest first (all of them, or one event's)."""
        table = self.deadletters
        query = select(table).where(table.c.consumer == consumer).order_by(table.c.id)
        if event_id is not None:
            query = query.where(table.c.event_id == event_id)
        async with self.db.sessions() as s:
            return (await s.execute(query)).all()

    async def count_parked(self, consumer: str) -> int:
        table = self.deadletters
        async with self.db.sessions() as s:
            return await s.scalar(select(func.count()).where(table.c.consumer == consumer)) or 0

    async def unpark(self, parked_id: int) -> None:
        async with self.db.transaction() as s:
            await s.execute(delete(self.deadletters).where(self.deadletters.c.id == parked_id))

    async def repark(self, parked_id: int, error: BaseException) -> None:
        """A re-drive failed again: keep the record, with the new error."""
        table = self.deadletters
        async with self.db.transaction() as s:
            await s.execute(
                update(table)
                .where(table.c.id == parked_id)
                .values(error=error_text(error), attempts=table.c.attempts + 1, parked_at=self.clock.now())
            )


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
        """Publish the oldest outbox rows. They are claimed and deleted in one statement, in a
        transaction that commits only once the bus has acknowledged them all: a failure to
        publish rolls the delete back, and the rows go out again (the inbox drops repeats)."""
        if not self.store.db.is_postgres:
            return await self._relay_outside_the_write_lock()
        table = self.store.outbox
        async with self.store.db.transaction() as s:
            if not await s.scalar(select(func.pg_try_advisory_xact_lock(self._lock_id))):
                return 0
            oldest = select(table.c.id).order_by(table.c.id).limit(self.batch)
            claimed = await s.execute(
                delete(table)
                .where(table.c.id.in_(oldest))
                .returning(table.c.id, table.c.topic, table.c.key, table.c.payload)
            )
            rows = sorted(claimed.all(), key=lambda r: r.id)  # RETURNING promises no order
            if rows:
                await self._publish(rows)
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        messages = [Message(r.topic, r.key, r.payload, type_headers(r.payload)) for r in rows]
        await self.bus.publish(messages)
        m = self.store.metrics
        m.tally(m.produced, ((self.store.service, x.topic, x.headers.get(TYPE_HEADER, "")) for x in messages))

    async def _relay_outside_the_write_lock(self) -> int:
        """SQLite has one write lock for the whole file, and a relay that held it while the bus
        made its records durable (an fsync of the bus's own file) held up every other writer of
        the process: a third of the lock's time under load. So on SQLite the rows are read,
        published, and only then deleted. The embedded process runs one relay per outbox, so
        no other takes the same rows; a crash between publish and delete publishes them again,
        as a failed commit would (the inbox drops repeats)."""
        table = self.store.outbox
        async with self.store.db.reading() as conn:
            oldest = select(table.c.id, table.c.topic, table.c.key, table.c.payload).order_by(table.c.id)
            rows = (await conn.execute(oldest.limit(self.batch))).all()
        if rows:
            await self._publish(rows)
            async with self.store.db.transaction() as s:
                await s.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        return len(rows)

    async def run(self, stop: Stop) -> None:
        what = f"outbox relay {self.store.outbox.name}"
        while not stop:
            self.store.outbox_written.clear()
            try:  # database or broker away, or a record the broker refuses: keep the rows, try again
                sent = await retry(self.relay_once, what=what, stop=stop, retry_on=always)
            except Stopped:
                return
            if sent < self.batch:
                try:
                    await asyncio.wait_for(self.store.outbox_written.wait(), self.interval)
                except TimeoutError:
                    pass


COMMIT_EVERY = 0.5  # seconds: how often a busy consumer commits its offsets

Handler = Callable[[Tx, Envelope, Any], Awaitable[None]]
# Locks, in case-id order, the rows of the cases a batch of events will change: see Consumer.
Lock = Callable[[Tx, list[str]], Awaitable[None]]


@dataclass
class Work:
    """A record a consumer will handle: the key its inbox remembers it by, its case (for the
    `lock` hook), its type (for the logs) and its effect, run inside the batch's transaction."""

    record: Record
    event_id: str
    case_id: str
    type: str
    effect: Callable[[Tx], Awaitable[None]]


# What a `TopicConsumer` makes of a record: its work, the error that parks it, or None to skip it.
Decode = Callable[[Record], "Work | Exception | None"]


def _handling(handler: Handler, envelope: Envelope, event: Event) -> Callable[[Tx], Awaitable[None]]:
    return lambda tx: handler(tx, envelope, event)


@dataclass(frozen=True)
class Redriven:
    """What a re-drive did with one parked record: handled (and removed), or kept with `error`."""

    parked_id: int
    event_id: str | None
    handled: bool
    error: str | None = None


class Consumer:
    """Consumes records for one service: a batch of records per transaction with their inbox
    rows, offsets committed after the transaction. If a record of a batch fails, the batch is
    rolled back and taken again one record per transaction, so only the failing record is
    parked.

    `lock` takes the row locks of a batch's cases in case-id order before anything else, the
    order every other multi-row locker uses (the dispatcher's timer worker), so batches do
    not deadlock with them; it gets the `Tx`, so it also loads, in the same query, what the
    batch's handlers will read (kept with `Tx.pending`)."""

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
        self.inbox_name = name  # the consumer its inbox rows name

    async def handle(self, record: Record, stop: Stop | None = None) -> bool:
        """Handle one record; False if asked to stop before its effect could be made durable."""
        return await self.handle_batch([record], stop)

    async def handle_batch(self, records: Sequence[Record], stop: Stop | None = None) -> bool:
        """Handle records, in one transaction if they all succeed; False if asked to stop before
        their effects could be made durable. A record that cannot be handled (bad payload, a
        bug) is parked without holding up the others; a transient failure (database or broker
        away, a deadlock) is retried until it passes."""
        work: list[Work] = []
        failed: list[tuple[Record, BaseException]] = []
        for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):  # one order everywhere
            prepared = self._prepare(record)
            if isinstance(prepared, Work):
                work.append(prepared)
            elif prepared is not None:
                failed.append((record, prepared))
        outcome = await self._attempt(work, stop) if len(work) > 1 else None
        if outcome is False:
            return False
        if isinstance(outcome, Exception):
            log.info("%s: a record failed in a batch of %d (%r); taking them one by one", self.name, len(work), outcome)
        if outcome is True:
            self._count(work)
        else:
            for w in work:  # one transaction per record: find the ones that fail
                alone = await self._attempt([w], stop)
                if alone is False:
                    return False
                if isinstance(alone, Exception):
                    log.error(
                        "%s: cannot handle %s %s: %r",
                        self.name,
                        w.type,
                        w.event_id,
                        alone,
                        extra={"case_id": w.case_id, "event_id": w.event_id},
                    )
                    failed.append((w.record, alone))
                else:
                    self._count([w])
        for record, error in failed:
            try:
                await retry(partial(self.store.park, self.name, record, error), what=f"{self.name}: park", stop=stop)
            except Stopped:
                return False
        return True

    def _count(self, handled: Sequence[Work]) -> None:
        m = self.store.metrics
        m.tally(m.consumed, ((self.name, w.record.topic, w.type) for w in handled))

    def _prepare(self, record: Record) -> Work | Exception | None:
        """The record's work; the error if it is not a gridcall event; None if this consumer
        has no handler for it. A record whose type header names a known event this consumer
        does not handle is skipped before its payload is decoded (a record without the header,
        from an older relay or a re-drive, is decoded to find out)."""
        kind = record.headers.get(TYPE_HEADER)
        if kind is not None and (known := EVENT_TYPES.get(kind)) is not None and known not in self.handlers:
            return None
        try:
            envelope = Envelope.decode(record.value)
            event = envelope.event()
        except (UnknownEvent, ValueError) as exc:
            return exc
        handler = self.handlers.get(type(event))
        if handler is None:
            return None
        return Work(record, envelope.id, event.case_id, envelope.type, _handling(handler, envelope, event))

    async def _attempt(self, work: list[Work], stop: Stop | None) -> bool | Exception:
        """Apply the work in one transaction, retrying transient failures: True once committed,
        False if asked to stop meanwhile, or the error that rolled it back."""
        try:
            await retry(partial(self._apply, work), what=f"{self.name}: {len(work)} record(s)", stop=stop)
        except Stopped:
            return False
        except Exception as exc:
            return exc
        return True

    async def _apply(self, work: list[Work]) -> None:
        async with self.store.transaction() as tx:
            if self.lock:
                await self.lock(tx, sorted({w.case_id for w in work}))
            for w in await self._first_deliveries(tx, work):
                with about(w.case_id, w.event_id):  # for the log lines the handler writes
                    await w.effect(tx)

    async def _first_deliveries(self, tx: Tx, work: list[Work]) -> list[Work]:
        """The work whose events this consumer has not handled before (each event once): their
        inbox rows go in with one insert that skips the events already there, so a redelivered
        event changes nothing, and a concurrent delivery of the same event waits for the other
        transaction, then finds the event handled."""
        rows = [{"consumer": self.inbox_name, "event_id": w.event_id} for w in work]
        new = await insert_new(tx.session, self.store.inbox, rows, key="event_id")
        first: list[Work] = []
        for w in work:
            if w.event_id in new:
                new.discard(w.event_id)
                first.append(w)
        return first

    async def redrive(self, event_id: str | None = None, *, patience: float = 10.0) -> list[Redriven]:
        """Put this consumer's parked records (all, or one event's) back through its handling,
        oldest first. A handled record is removed (the inbox keeps a record handled before
        from changing anything twice); one that fails again stays, with the new error. A
        database that stays away for `patience` seconds leaves the rest as they were."""
        done: list[Redriven] = []
        stop = Stop.after(patience)
        for row in await self.store.parked(self.name, event_id):
            record = Record(
                row.source_topic, row.source_partition, row.source_offset, row.case_id, row.payload, _ce_headers(row)
            )
            prepared = self._prepare(record)
            outcome = await self._attempt([prepared], stop) if isinstance(prepared, Work) else (prepared or True)
            if outcome is False:
                done.append(Redriven(row.id, row.event_id, False, "the database is unavailable; try again"))
                break
            if outcome is True:
                await self.store.unpark(row.id)
                done.append(Redriven(row.id, row.event_id, True))
            else:
                await self.store.repark(row.id, outcome)
                done.append(Redriven(row.id, row.event_id, False, error_text(outcome)))
        return done

    async def run(self, stop: Stop) -> None:
        """Fetch, handle, commit. Offsets are committed once the effects are durable: at most
        every `COMMIT_EVERY` seconds while records keep coming, at once when none are waiting,
        and on stopping. An offset commit is a round trip to the broker (a transaction of the
        bus file in embedded mode), and after a crash the inbox makes the records handled since
        the last commit harmless when they come again."""
        sub = self.bus.subscribe(self.name, self.topics)
        await sub.start()
        handled: list[Record] = []  # effects durable, offsets not committed yet
        committed_at = time.monotonic()
        try:
            while not stop:
                batch = await sub.fetch(timeout=0.25, max_records=self.batch)
                if batch:
                    if not await self.handle_batch(batch, stop):
                        break  # asked to stop before the batch's effects were durable
                    handled += batch
                if handled and (not batch or time.monotonic() - committed_at >= COMMIT_EVERY):
                    await sub.commit(handled)
                    handled, committed_at = [], time.monotonic()
                    self._measure_lag(sub)
            if handled:
                await sub.commit(handled)
        finally:
            await sub.stop()

    def _measure_lag(self, sub: Any) -> None:
        """Records behind each partition's end, where the bus knows (Kafka's highwater); the
        local bus does not say, and no gauge is set."""
        lag = getattr(sub, "lag", None)
        if lag is None:
            return
        m = self.store.metrics
        for (topic, partition), behind in lag().items():
            m.child(m.lag, (self.name, topic, str(partition))).set(behind)


def _ce_headers(parked: Row[Any]) -> dict[str, str]:
    """A parked record's CloudEvents headers as `park` kept them (its id and type): a record
    whose payload is not an envelope (a department's update) is identified by them."""
    kept = {ID_HEADER: parked.event_id, TYPE_HEADER: parked.event_type}
    return {k: v for k, v in kept.items() if v is not None}


class TopicConsumer(Consumer):
    """A consumer of topics whose records are not gridcall envelopes (a department's updates,
    departments/adapters/inbound.py): `decode` makes each record's work, with the key the inbox
    remembers it by, or the error that parks it. Batches, the inbox, dead letters, re-drive and
    offsets are the `Consumer`'s; `inbox` names the consumer in its inbox rows when they are
    shared with another way in (the inbound webhook's)."""

    def __init__(
        self,
        name: str,
        store: Store,
        bus: Bus,
        topics: Sequence[str],
        decode: Decode,
        *,
        inbox: str | None = None,
        batch: int = 100,
    ) -> None:
        super().__init__(name, store, bus, {}, [], batch=batch)
        self.topics = list(topics)
        self.decode = decode
        self.inbox_name = inbox or name

    def _prepare(self, record: Record) -> Work | Exception | None:
        return self.decode(record)
