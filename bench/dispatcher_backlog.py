"""Dispatcher throughput: N `case.reported` events wait on the broker (a backlog, as after an
outage or a burst), then one dispatcher process starts and routes them. Measured: events
routed per second, from the process being healthy to the last case stored with its
assignment (from the first routed case on, so joining the consumer group is not counted),
once handling one event per transaction and once with the configured batch.

Run: make bench  (or python -m bench.dispatcher_backlog -n 3000)
"""

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import count_rows, service_env
from dispatcher.tables import assignments
from gridcall.migrate import upgrade
from services.district.clock import SystemClock
from services.district.events import CaseReported, Location, Stream
from services.messaging.bus import Message
from services.messaging.bus.kafka import KafkaBus
from services.messaging.envelope import Envelope
from services.runtime.settings import Settings
from tests.support.cluster import distributed
from tests.support.servers import admin_postgres, kafka_broker, kafka_is_tansu, scratch_database

GRIDS = [("G11", 30.505, 114.305), ("G12", 30.515, 114.305), ("G21", 30.505, 114.315), ("G22", 30.515, 114.315)]


async def publish_backlog(bootstrap: str, prefix: str, n: int) -> None:
    bus = KafkaBus(bootstrap, enable_idempotence=not kafka_is_tansu())
    await bus.start()
    topic = Settings(topic_prefix=prefix).topic(Stream.CASES)
    await bus.ensure_topics([Settings(topic_prefix=prefix).topic(s) for s in Stream])
    messages = []
    for i in range(n):
        grid, lat, lon = GRIDS[i % len(GRIDS)]
        event = CaseReported(
            case_id=str(uuid.uuid4()),
            category="garbage",
            description="Bags piled in the stairwell",
            location=Location(lat=lat, lon=lon),
            grid_id=grid,
        )
        envelope = Envelope.wrap(event, source="/bench", time=SystemClock().now())
        messages.append(Message(topic, event.case_id, envelope.encode()))
    for start in range(0, n, 500):
        await bus.publish(messages[start : start + 500])
    await bus.stop()


def drain(admin: str, bootstrap: str, n: int, batch: int) -> float:
    """Events routed per second by one dispatcher with this batch size."""
    with scratch_database(admin) as db_url, tempfile.TemporaryDirectory() as logs:
        upgrade(db_url)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        asyncio.run(publish_backlog(bootstrap, prefix, n))
        env = {**service_env(db_url, bootstrap, prefix), "GRIDCALL_CONSUMER_BATCH": str(batch)}
        with distributed(env, Path(logs), services=("dispatcher",)):
            while (first := asyncio.run(count_rows(db_url, assignments))) == 0:  # the consumer joins its group
                time.sleep(0.05)
            start = time.perf_counter()
            while (done := asyncio.run(count_rows(db_url, assignments))) < n:
                time.sleep(0.05)
            return (done - first) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--events", type=int, default=3000)
    parser.add_argument("-b", "--batch", type=int, default=50, help="the batch to compare (default: PostgreSQL's)")
    args = parser.parse_args()
    with admin_postgres() as admin, kafka_broker() as broker:
        print(f"backlog: {args.events} case.reported events, one dispatcher process")
        for batch in (1, args.batch):
            rate = drain(admin, broker.bootstrap, args.events, batch)
            print(f"batch {batch:>4} per transaction: {rate:8.1f} events routed/s")


if __name__ == "__main__":
    main()
