"""One behaviour, both buses: the durable local bus (embedded mode) and Kafka (Tansu here)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.messaging.bus import Bus, Message, Record
from services.messaging.bus.kafka import KafkaBus, NoIdempotentProducer
from services.messaging.bus.local import LocalBus
from tests.support.servers import kafka_is_tansu

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "kafka"])
async def bus(request, tmp_path) -> AsyncIterator[Bus]:
    if request.param == "local":
        b: Bus = LocalBus(tmp_path / "bus.db")
    else:
        broker = request.getfixturevalue("broker")
        b = KafkaBus(
            broker.bootstrap,
            enable_idempotence=not kafka_is_tansu(),
            partitions=3,
            session_timeout_ms=6_000,
            rebalance_timeout_ms=3_000,
        )
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
def topic(topic_prefix) -> str:
    return f"{topic_prefix}.cases"


async def drain(sub, want: int, rounds: int = 40) -> list[Record]:
    got: list[Record] = []
    for _ in range(rounds):
        got += await sub.fetch(timeout=0.5)
        if len(got) >= want:
            break
    return got


async def read_back(bus: Bus, topic: str, want: int) -> list[Record]:
    """What a new consumer group reads of `topic`, until it has `want` records."""
    sub = bus.subscribe(f"g-{uuid.uuid4().hex[:6]}", [topic])
    await sub.start()
    try:
        return await drain(sub, want)
    finally:
        await sub.stop()


async def test_records_of_one_key_arrive_in_publish_order(bus, topic):
    await bus.ensure_topics([topic])
    sent = [Message(topic, f"case-{i % 4}", f"{i}".encode()) for i in range(40)]
    await bus.publish(sent)
    got = await read_back(bus, topic, len(sent))
    assert sorted(int(r.value) for r in got) == list(range(40))
    for key in {m.key for m in sent}:
        values = [int(r.value) for r in got if r.key == key]
        assert values == sorted(values)


async def test_a_round_larger_than_a_record_batch_arrives_whole_in_order_with_its_headers(bus, topic):
    """A relay round of ~1.2 MB (several 256 KiB batches per partition, and one record larger
    than a batch on its own) keeps each key's order, every header, and on Kafka the partition
    the producer's default partitioner gives the key, as a plain `send` would."""
    await bus.ensure_topics([topic])
    big = 300 * 1024
    sent = [
        Message(topic, f"case-{i % 7}", f"{i}:".encode() + b"x" * (big if i == 50 else 4000), {"ce_type": f"t{i}"})
        for i in range(300)
    ]
    await bus.publish(sent)
    got = await read_back(bus, topic, len(sent))
    number = {(r.partition, r.offset): int(r.value.split(b":")[0]) for r in got}
    assert sorted(number.values()) == list(range(300))
    assert all(r.headers == {"ce_type": f"t{number[(r.partition, r.offset)]}"} for r in got)
    assert len(next(r for r in got if number[(r.partition, r.offset)] == 50).value) > big
    for key in {m.key for m in sent}:
        of_key = [r for r in got if r.key == key]
        values = [number[(r.partition, r.offset)] for r in of_key]
        assert values == sorted(values)
        if isinstance(bus, KafkaBus):
            partitions = list(range(3))
            assert {r.partition for r in of_key} == {DefaultPartitioner()(key.encode(), partitions, partitions)}


async def test_uncommitted_records_are_delivered_again_and_committed_ones_are_not(bus, topic):
    await bus.ensure_topics([topic])
    group = f"g-{uuid.uuid4().hex[:6]}"
    await bus.publish([Message(topic, "k", f"{i}".encode()) for i in range(10)])

    first = bus.subscribe(group, [topic])
    await first.start()
    got = await drain(first, 10)
    assert len(got) == 10
    await first.commit([r for r in got if int(r.value) < 6])  # the work on 6..9 never finished
    await first.stop()

    second = bus.subscribe(group, [topic])
    await second.start()
    try:
        again = await drain(second, 4)
    finally:
        await second.stop()
    assert sorted(int(r.value) for r in again) == [6, 7, 8, 9]


async def test_groups_are_independent(bus, topic):
    await bus.ensure_topics([topic])
    await bus.publish([Message(topic, "k", b"x")])
    for group in ("a", "b"):
        sub = bus.subscribe(f"{group}-{uuid.uuid4().hex[:6]}", [topic])
        await sub.start()
        try:
            assert [r.value for r in await drain(sub, 1)] == [b"x"]
        finally:
            await sub.stop()


@pytest.mark.skipif(not kafka_is_tansu(), reason="a broker with idempotent producers accepts one")
async def test_idempotence_asked_of_a_broker_without_it_fails_at_start_saying_what_to_set(broker):
    """Tansu has no idempotent producers: instead of aiokafka's bare UnknownError, the start
    fails naming the setting to change."""
    bus = KafkaBus(broker.bootstrap, enable_idempotence=True)
    with pytest.raises(NoIdempotentProducer, match="GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE=false"):
        await bus.start()
    await bus.stop()  # nothing left to stop
