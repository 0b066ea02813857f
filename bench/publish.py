"""CPU per record of `KafkaBus.publish`, as the outbox relay calls it: rounds of 500 records
of ~750 bytes with their type header, a key (a case id) each, to a broker on this machine
(the tests' Tansu unless KAFKA_BOOTSTRAP_SERVERS is set). Only this process's CPU counts.

Run: .venv/bin/python -m bench.publish [--rounds 40]
"""

import argparse
import asyncio
import resource
import uuid

from services.messaging.bus import TYPE_HEADER, Message
from services.messaging.bus.kafka import KafkaBus
from tests.support.servers import kafka_broker, kafka_is_tansu

PAYLOAD = b'{"specversion":"1.0","id":"x","type":"gridcall.case.assigned",' + b'"data":"' + b"x" * 700 + b'"}'


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(bootstrap: str, rounds: int, size: int) -> float:
    bus = KafkaBus(bootstrap, enable_idempotence=not kafka_is_tansu(), partitions=6)
    await bus.start()
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        await bus.ensure_topics([topic])
        headers = {TYPE_HEADER: "gridcall.case.assigned"}
        batches = [[Message(topic, str(uuid.uuid4()), PAYLOAD, headers) for _ in range(size)] for _ in range(rounds)]
        await bus.publish(batches[0])  # metadata, connections
        start = _cpu()
        for batch in batches:
            await bus.publish(batch)
        return (_cpu() - start) / (rounds * size)
    finally:
        await bus.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    with kafka_broker() as broker:
        per_record = asyncio.run(_measure(broker.bootstrap, args.rounds, args.size))
    print(f"publish: {per_record * 1e6:.1f} µs CPU per record ({args.rounds} rounds of {args.size})")


if __name__ == "__main__":
    main()
