"""A durable bus for embedded mode: an append-only log in its own SQLite file.

One member per consumer group (embedded mode runs one process); offsets are stored per
(group, topic) in the same file, so a killed process resumes where it committed.
"""

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, Text, select
from sqlalchemy.dialects.sqlite import insert

from services.bus import Message, Record, last_per_partition
from services.db import Database

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


class LocalBus:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Database | None = None
        self._published = asyncio.Condition()
        self._version = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(f"sqlite+aiosqlite:///{self.path}")
        async with self.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def stop(self) -> None:
        if self.db:
            await self.db.dispose()
            self.db = None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Topics exist implicitly in the local log."""

    async def publish(self, messages: Sequence[Message]) -> None:
        assert self.db, "LocalBus.start() first"
        if not messages:
            return
        async with self.db.transaction() as s:
            await s.execute(
                records.insert(),
                [
                    {
                        "topic": m.topic,
                        "key": m.key,
                        "value": m.value,
                        "headers": json.dumps(m.headers),
                    }
                    for m in messages
                ],
            )
        async with self._published:
            self._version += 1
            self._published.notify_all()

    def subscribe(self, group: str, topics: Sequence[str]) -> "LocalSubscription":
        return LocalSubscription(self, group, list(topics))


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
        assert self.bus.db
        async with self.bus.db.sessions() as s:
            batch: list[Record] = []
            for topic in self.topics:
                rows = await s.execute(
                    select(records)
                    .where(records.c.topic == topic, records.c.seq >= self._position[topic])
                    .order_by(records.c.seq)
                    .limit(max_records)
                )
                batch += [Record(r.topic, 0, r.seq, r.key, r.value, json.loads(r.headers)) for r in rows]
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
        assert self.bus.db
        last = last_per_partition(done)
        if not last:
            return
        async with self.bus.db.transaction() as s:
            for (topic, _), seq in last.items():
                stmt = insert(offsets).values(grp=self.group, topic=topic, next_seq=seq + 1)
                await s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["grp", "topic"], set_={"next_seq": stmt.excluded.next_seq}
                    )
                )
