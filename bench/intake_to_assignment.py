"""Distributed-mode benchmark: N reports through separate intake, dispatcher, departments and
notifier processes on PostgreSQL and the broker; throughput and latency from POST to assignment.

Assignment time is when `case.assigned` reaches a bench consumer on the broker, so measuring
adds no load to the services. Run: make bench  (or python -m bench.intake_to_assignment -n 1000)
"""

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench.common import figures, post_reports, service_env
from gridcall.migrate import upgrade
from services.bus.kafka import KafkaBus
from services.events import CaseAssigned, Envelope, Stream
from tests.support.cluster import distributed
from tests.support.servers import admin_postgres, kafka_broker, kafka_is_tansu, scratch_database


async def drive(intake_url: str, bus: KafkaBus, topic: str, n: int, concurrency: int) -> None:
    assigned_at: dict[str, float] = {}
    sub = bus.subscribe(f"bench-{uuid.uuid4().hex[:6]}", [topic])
    await sub.start()

    async def watch() -> None:
        while len(assigned_at) < n:
            for r in await sub.fetch(timeout=0.5):
                env = Envelope.decode(r.value)
                if env.type == CaseAssigned.type and env.subject not in assigned_at:
                    assigned_at[env.subject] = time.perf_counter()

    watcher = asyncio.create_task(watch())
    # Let the bench consumer join its group before the clock starts.
    await asyncio.sleep(4)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(intake_url, connector=connector) as client:
        start = time.perf_counter()
        done = await post_reports(client, n, concurrency)
        accepted = time.perf_counter()
        await asyncio.wait_for(watcher, timeout=300)
    sent_at = {answer["case_id"]: t0 for t0, _, answer in done}
    post_latency = [latency for _, latency, _ in done]
    end = max(assigned_at.values())
    await sub.stop()
    lat = [assigned_at[c] - sent_at[c] for c in sent_at]
    print(f"reports: {n}, concurrency: {concurrency}")
    print(f"accept (POST 202):      {figures(n / (accepted - start), post_latency)}")
    print(f"POST -> case.assigned:  {figures(n / (end - start), lat)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--reports", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    args = parser.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with (
        admin_postgres() as admin,
        scratch_database(admin) as db_url,
        kafka_broker() as broker,
        tempfile.TemporaryDirectory() as logs,
    ):
        upgrade(db_url)
        with distributed(service_env(db_url, broker.bootstrap, prefix), Path(logs)) as cluster:

            async def run() -> None:
                bus = KafkaBus(broker.bootstrap, enable_idempotence=not kafka_is_tansu())
                await bus.start()
                try:
                    await drive(
                        cluster["intake"].url, bus, f"{prefix}.{Stream.CASES.value}", args.reports, args.concurrency
                    )
                finally:
                    await bus.stop()

            asyncio.run(run())


if __name__ == "__main__":
    main()
