"""The local bus's memory of the records it committed (services/messaging/bus/local.py): a subscriber that
keeps up reads from it without touching the file; one that is behind it, or a bus restarted on
an old file, reads the file; every record arrives once, in order, whichever way it came."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.messaging.bus import Message, Record
from services.messaging.bus import local as local_bus
from services.messaging.bus.local import LocalBus, LocalSubscription

TOPIC = "t.cases"


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[LocalBus]:
    b = LocalBus(tmp_path / "bus.db")
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The topics subscribers read from the file."""
    reads: list[str] = []
    original = LocalSubscription._read

    async def counting(self: LocalSubscription, max_records: int) -> list[Record]:
        reads.extend(t for t in self.topics if self.bus.recent(t, self._position[t], max_records) is None)
        return await original(self, max_records)

    monkeypatch.setattr(LocalSubscription, "_read", counting)
    return reads


async def publish(bus: LocalBus, *values: str) -> None:
    await bus.publish([Message(TOPIC, "case-1", v.encode(), {"ce_type": "x"}) for v in values])


async def drain(sub: LocalSubscription, want: int) -> list[str]:
    got: list[Record] = []
    for _ in range(20):
        batch = await sub.fetch(timeout=0.2, max_records=3)
        await sub.commit(batch)
        got += batch
        if len(got) >= want:
            break
    assert [r.offset for r in got] == sorted(r.offset for r in got)
    assert all(r.headers == {"ce_type": "x"} for r in got)
    return [r.value.decode() for r in got]


async def test_a_subscriber_that_keeps_up_reads_from_memory(bus, file_reads):
    sub = bus.subscribe("g", [TOPIC])
    await sub.start()
    await publish(bus, "a", "b")
    assert await drain(sub, 2) == ["a", "b"]
    assert file_reads == [TOPIC]  # a new group starts at the beginning of the file
    await publish(bus, "c", "d", "e")
    await publish(bus, "f")
    assert await drain(sub, 4) == ["c", "d", "e", "f"]
    assert file_reads == [TOPIC]


async def test_a_bus_restarted_on_an_old_file_reads_it_then_goes_on_from_memory(tmp_path, file_reads):
    first = LocalBus(tmp_path / "bus.db")
    await first.start()
    await publish(first, "a", "b", "c", "d")
    await first.stop()
    bus = LocalBus(tmp_path / "bus.db")
    await bus.start()
    try:
        sub = bus.subscribe("g", [TOPIC])
        await sub.start()
        await publish(bus, "e", "f")
        assert await drain(sub, 6) == ["a", "b", "c", "d", "e", "f"]
        assert file_reads == [TOPIC, TOPIC]  # a-c, then d-f: d was committed before the restart
        await publish(bus, "g")
        assert await drain(sub, 1) == ["g"]
        assert len(file_reads) == 2
    finally:
        await bus.stop()


async def test_a_subscriber_behind_what_memory_keeps_reads_the_file(bus, file_reads, monkeypatch):
    monkeypatch.setattr(local_bus, "TAIL", 2)
    bus._tails.clear()
    sub = bus.subscribe("g", [TOPIC])
    await sub.start()
    await publish(bus, "a", "b", "c", "d", "e")
    assert await drain(sub, 5) == ["a", "b", "c", "d", "e"]
    assert file_reads  # a-c and d from the file; memory keeps d and e only


async def test_records_another_writer_appended_are_not_missed(bus, tmp_path):
    sub = bus.subscribe("g", [TOPIC])
    await sub.start()
    await publish(bus, "a")
    assert await drain(sub, 1) == ["a"]
    other = LocalBus(tmp_path / "bus.db")
    await other.start()
    try:
        await publish(other, "b")
    finally:
        await other.stop()
    await publish(bus, "c")
    assert await drain(sub, 2) == ["b", "c"]
