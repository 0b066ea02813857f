"""Consumers: a batch of records per transaction with their inbox rows, offsets committed after.

A `Consumer` handles a batch in one transaction that also inserts each record's `(consumer,
event id)` into the inbox, so a redelivered event changes nothing; if one record fails, the
batch is taken again one record per transaction and only that record is parked. A transient
failure (database or broker away) is retried until it passes."""

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import Row

from services.district.events import Event, Stream
from services.messaging.bus import ID_HEADER, TYPE_HEADER, Bus, Record
from services.messaging.envelope import EVENT_TYPES, Envelope, UnknownEvent
from services.messaging.tables import error_text
from services.messaging.transaction import Store, Tx
from services.runtime.lifecycle import Stop
from services.runtime.logs import about
from services.runtime.retry import Stopped, retry

log = logging.getLogger(__name__)


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
                await retry(
                    partial(self.store.parking.park, self.name, record, error), what=f"{self.name}: park", stop=stop
                )
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
        new = await tx.first_time(self.inbox_name, [w.event_id for w in work])
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
        for row in await self.store.parking.parked(self.name, event_id):
            record = Record(
                row.source_topic, row.source_partition, row.source_offset, row.case_id, row.payload, _ce_headers(row)
            )
            prepared = self._prepare(record)
            outcome = await self._attempt([prepared], stop) if isinstance(prepared, Work) else (prepared or True)
            if outcome is False:
                done.append(Redriven(row.id, row.event_id, False, "the database is unavailable; try again"))
                break
            if outcome is True:
                await self.store.parking.unpark(row.id)
                done.append(Redriven(row.id, row.event_id, True))
            else:
                await self.store.parking.repark(row.id, outcome)
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
    departments/adapters/handlers.py): `decode` makes each record's work, with the key the inbox
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
