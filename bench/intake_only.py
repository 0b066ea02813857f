"""Intake-only benchmark: POST /v1/reports on the intake service alone (accepted and durable:
report, case view, timeline and outbox row committed to PostgreSQL before the 202), beside a
bare FastAPI endpoint (bench/bare_app.py) on the same machine in the same run, so the ratio
shows what intake's own work costs. Both are one uvicorn process each, driven by the same
load generator. Run: make bench  (or python -m bench.intake_only -n 2000 -c 16)
"""

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.common import count_rows, figures, pct, post_reports, service_env
from gridcall.migrate import upgrade
from intake.tables import reports
from tests.support.cluster import Process, base_env, distributed
from tests.support.servers import admin_postgres, free_port, kafka_broker, scratch_database

WARMUP = 50


@contextmanager
def bare_app(log_dir: Path) -> Iterator[Process]:
    port = free_port()
    args = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    p = Process("bare", port, args, base_env({}), log_dir / "bare.log")
    try:
        p.start()
        yield p
    finally:
        p.stop()


async def load(url: str, n: int, concurrency: int) -> tuple[float, list[float], float]:
    """POST BODY n times after WARMUP uncounted posts: (requests/s, latencies, share of one
    core the load generator used)."""
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await post_reports(session, WARMUP, concurrency)
        start, cpu = time.perf_counter(), time.process_time()
        done = await post_reports(session, n, concurrency)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return n / wall, [latency for _, latency, _ in done], cpu / wall


def report(name: str, rate: float, latency: list[float], client_cpu: float) -> None:
    print(f"{name:<24}{figures(rate, latency)}   (load generator: {client_cpu:.0%} of a core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    args = parser.parse_args()
    with (
        admin_postgres() as admin,
        scratch_database(admin) as db_url,
        kafka_broker() as broker,
        tempfile.TemporaryDirectory() as logs,
    ):
        upgrade(db_url)
        env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
        with distributed(env, Path(logs), services=("intake",)) as cluster, bare_app(Path(logs)) as bare:
            print(f"requests: {args.requests} (+{WARMUP} warm-up), concurrency: {args.concurrency}")
            bare_rate, bare_lat, cpu = asyncio.run(load(bare.url, args.requests, args.concurrency))
            report("bare FastAPI (no I/O):", bare_rate, bare_lat, cpu)
            intake_rate, intake_lat, cpu = asyncio.run(load(cluster["intake"].url, args.requests, args.concurrency))
            report("intake (202, durable):", intake_rate, intake_lat, cpu)
            stored, accepted = asyncio.run(count_rows(db_url, reports)), args.requests + WARMUP
            print(f"durable: {stored} rows in {reports.name} for {accepted} accepted (202) reports")
            print(
                f"ratio: bare/intake throughput {bare_rate / intake_rate:.1f}x   "
                f"intake/bare p99 {pct(intake_lat, 99) / pct(bare_lat, 99):.1f}x"
            )
            if stored != accepted:
                raise SystemExit(f"not durable: {accepted - stored} accepted reports missing from {reports.name}")


if __name__ == "__main__":
    main()
