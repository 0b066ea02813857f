"""A durable bus for embedded mode: an append-only log in its own SQLite file.

One member per consumer group (embedded mode runs one process); offsets are stored per
(group, topic) in the same file, so a killed process resumes where it committed.

The file has one writer, a group commit (services/storage/batching.py): the appends of every relay
and the offset commits of every subscriber that wait together are one transaction, and each
returns once that transaction is committed, so nothing is acknowledged before it is durable
and the embedded process pays one fsync for what its services publish and commit at a time.

Every service subscribes to the cases topic, so each record used to be read from the file once
per subscriber. The bus keeps the last records it committed of each topic in memory (`TAIL`
per topic) and a subscriber that is not behind them reads them from there; one further behind
(after a restart, say) reads the file. The process is the file's only writer: should the log
hold a record this bus did not append, memory answers only for what came after it.
"""

import asyncio
import json
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text, bindparam, func, select
from sqlalchemy.dialects.sqlite import insert

from services.messaging.bus import Message, Record, last_per_partition
from services.storage.batching import GroupCommit
from services.storage.db import Database

metadata = MetaData()
records = Table(
    "bus_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False, index=True),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
)
offsets = Table(
    "bus_offsets",
    metadata,
    Column("grp", String(200), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("next_seq", Integer, nullable=False),
)


@dataclass(frozen=True)
class _Offsets:
    """A group's next positions, per topic."""

    group: str
    next_seq: dict[str, int]


_Write = Sequence[Message] | _Offsets
_SAVE_OFFSETS = insert(offsets)
SAVE_OFFSETS = _SAVE_OFFSETS.on_conflict_do_update(
    index_elements=["grp", "topic"], set_={"next_seq": _SAVE_OFFSETS.excluded.next_seq}
)
APPEND = records.insert().returning(records.c.seq, sort_by_parameter_order=True)


TAIL = 4096


class LocalBus:
    async def unready(self) -> str | None:
        """The local bus is the service's own database: ready when it is."""
        return None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Database | None = None
        self._published = asyncio.Condition()
        self._version = 0
        self._writes: GroupCommit[_Write, None] = GroupCommit("local bus", self._write)
        self._tails: dict[str, deque[Record]] = {}  # per topic, the last records committed here
        self._since = 0  # every record from this position on was committed here (unless evicted)
        self._last_seq = 0  # the last record in the log, as far as this bus knows

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(f"sqlite+aiosqlite:///{self.path}")
        async with self.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            self._last_seq = await conn.scalar(select(func.max(records.c.seq))) or 0
        self._since = self._last_seq + 1

    async def stop(self) -> None:
        await self._writes.close()
        if self.db:
            await self.db.dispose()
            self.db = None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Topics exist implicitly in the local log."""

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        await self._writes.submit(list(messages))
        async with self._published:
            self._version += 1
            self._published.notify_all()

    async def _commit_offsets(self, group: str, next_seq: dict[str, int]) -> None:
        await self._writes.submit(_Offsets(group, next_seq))

    async def _write(self, writes: Sequence[_Write]) -> list[None]:
        """Appends in the order they came (so each key's records stay in order), and each
        group's furthest position per topic, in one transaction."""
        assert self.db, "LocalBus.start() first"
        messages = [m for w in writes if not isinstance(w, _Offsets) for m in w]
        appended = [
            {"topic": m.topic, "key": m.key, "value": m.value, "headers": json.dumps(m.headers)} for m in messages
        ]
        furthest: dict[tuple[str, str], int] = {}
        for w in writes:
            if isinstance(w, _Offsets):
                for topic, seq in w.next_seq.items():
                    furthest[w.group, topic] = max(seq, furthest.get((w.group, topic), 0))
        seqs: Sequence[int] = []
        async with self.db.transaction() as s:
            if appended:
                seqs = (await s.execute(APPEND, appended)).scalars().all()
            if furthest:
                positions = [{"grp": g, "topic": t, "next_seq": n} for (g, t), n in sorted(furthest.items())]
                await s.execute(SAVE_OFFSETS, positions)
        self._keep(messages, seqs)
        return [None] * len(writes)

    def _keep(self, appended: list[Message], seqs: Sequence[int]) -> None:
        """Remember records just committed, unless the log holds others this bus did not append."""
        if not seqs:
            return
        if seqs[0] != self._last_seq + 1:  # another writer appended records: memory knows only what follows
            self._tails.clear()
            self._since = seqs[0]
        self._last_seq = seqs[-1]
        for m, seq in zip(appended, seqs, strict=True):
            self._tails.setdefault(m.topic, deque(maxlen=TAIL)).append(
                Record(m.topic, 0, seq, m.key, m.value, m.headers)
            )

    def recent(self, topic: str, position: int, most: int) -> list[Record] | None:
        """The records of `topic` from `position` on, from memory; None if the file may hold
        some that memory does not (from before the bus started, or evicted since)."""
        if position < self._since:
            return None
        tail = self._tails.get(topic)
        if tail is None:
            return []
        if len(tail) == tail.maxlen and position < tail[0].offset:
            return None
        start = bisect_left(tail, position, key=lambda r: r.offset)
        return list(islice(tail, start, start + most))

    def subscribe(self, group: str, topics: Sequence[str]) -> "LocalSubscription":
        return LocalSubscription(self, group, list(topics))


NEXT_RECORDS = (
    select(records)
    .where(records.c.topic == bindparam("topic"), records.c.seq >= bindparam("position"))
    .order_by(records.c.seq)
    .limit(bindparam("most"))
)


def _headers(stored: str) -> dict[str, str]:
    return json.loads(stored) if stored != "{}" else {}


class LocalSubscription:
    def __init__(self, bus: LocalBus, group: str, topics: list[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self._position: dict[str, int] = {}

    async def start(self) -> None:
        assert self.bus.db
        async with self.bus.db.transaction() as s:
            rows = await s.execute(select(offsets.c.topic, offsets.c.next_seq).where(offsets.c.grp == self.group))
            committed = {topic: seq for topic, seq in rows}
        self._position = {t: committed.get(t, 0) for t in self.topics}

    async def stop(self) -> None:
        pass

    async def _read(self, max_records: int) -> list[Record]:
        """The next records of each topic: from the bus's memory, else from the file, read
        beside the bus's writer, not after it."""
        assert self.bus.db
        batch: list[Record] = []
        behind = []
        for topic in self.topics:
            recent = self.bus.recent(topic, self._position[topic], max_records)
            if recent is None:
                behind.append(topic)
            else:
                batch += recent
        if behind:
            async with self.bus.db.reading() as conn:
                for topic in behind:
                    rows = await conn.execute(
                        NEXT_RECORDS, {"topic": topic, "position": self._position[topic], "most": max_records}
                    )
                    batch += [Record(r.topic, 0, r.seq, r.key, r.value, _headers(r.headers)) for r in rows]
        batch.sort(key=lambda r: r.offset)
        batch = batch[:max_records]
        for r in batch:
            self._position[r.topic] = r.offset + 1
        return batch

    async def fetch(self, timeout: float = 1.0, max_records: int = 200) -> list[Record]:
        seen = self.bus._version
        batch = await self._read(max_records)
        if batch:
            return batch
        published = self.bus._published
        try:
            async with published:
                await asyncio.wait_for(published.wait_for(lambda: self.bus._version != seen), timeout)
        except TimeoutError:
            return []
        return await self._read(max_records)

    async def commit(self, done: Sequence[Record]) -> None:
        last = last_per_partition(done)
        if last:
            await self.bus._commit_offsets(self.group, {topic: seq + 1 for (topic, _), seq in last.items()})
