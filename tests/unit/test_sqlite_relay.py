"""The relay on SQLite (embedded mode): it does not hold the file's one write lock while the bus
makes its records durable, and it still deletes only what the bus acknowledged."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, insert, select

from services.district.clock import SystemClock
from services.messaging.bus import Message
from services.messaging.relay import Relay
from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.messaging.transaction import Store
from services.storage.db import Database

metadata = MetaData()
outbox = outbox_table(metadata, "t")
inbox = inbox_table(metadata, "t")
deadletters = deadletter_table(metadata, "t")


class HeldBus:
    """A bus whose publish waits until `release` is set, then acknowledges or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.publishing = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = fail
        self.published: list[Message] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.publishing.set()
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the bus is away")
        self.published += messages


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with db.transaction() as s:
        await s.execute(insert(outbox), [{"topic": "t.cases", "key": f"c{i}", "payload": b"{}"} for i in range(3)])
    yield Store(
        db,
        source="test",
        outbox=outbox,
        inbox=inbox,
        deadletters=deadletters,
        clock=SystemClock(),
        topic=lambda stream: f"t.{stream}",
    )
    await db.dispose()


async def outbox_rows(store: Store) -> int:
    async with store.db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(outbox)) or 0)


async def test_other_writers_commit_while_the_relay_publishes_and_the_rows_go_once_acknowledged(store):
    bus = HeldBus()
    relaying = asyncio.create_task(Relay(store, bus).relay_once())  # type: ignore[arg-type]
    await bus.publishing.wait()
    async with asyncio.timeout(5):  # would wait for the lock if the relay held it
        async with store.db.transaction() as s:
            await s.execute(insert(outbox).values(topic="t.cases", key="c3", payload=b"{}"))
    assert await outbox_rows(store) == 4
    bus.release.set()
    assert await relaying == 3
    assert [m.key for m in bus.published] == ["c0", "c1", "c2"]
    assert await outbox_rows(store) == 1  # the row written meanwhile waits for the next round


async def test_rows_the_bus_did_not_acknowledge_stay(store):
    bus = HeldBus(fail=True)
    bus.release.set()
    with pytest.raises(ConnectionError):
        await Relay(store, bus).relay_once()  # type: ignore[arg-type]
    assert await outbox_rows(store) == 3
