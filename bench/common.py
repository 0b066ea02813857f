"""What the benchmarks share: the services' settings under load, percentiles, row counts."""

import asyncio
import statistics
import time
from typing import Any

import aiohttp
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.servers import kafka_is_tansu

# `insist`: every report is its own case (the same body would otherwise join the first as a duplicate).
BODY = {
    "category": "garbage",
    "description": "Bags piled in the stairwell",
    "location": {"lat": 30.505, "lon": 114.305},
    "insist": True,
}


def service_env(db_url: str, bootstrap: str, prefix: str) -> dict[str, str]:
    """Settings for the services under load: scratch database, broker, rate limit lifted."""
    return {
        "GRIDCALL_ENV": "test",
        "GRIDCALL_DATABASE_URL": db_url,
        "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": str(not kafka_is_tansu()).lower(),
        "GRIDCALL_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "GRIDCALL_KAFKA_REBALANCE_TIMEOUT_MS": "3000",
        "GRIDCALL_RATE_LIMIT": "1000000/minute",
        "GRIDCALL_TOPIC_PREFIX": prefix,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def figures(rate: float, latencies: list[float]) -> str:
    """Throughput and latency percentiles, as every benchmark prints them."""
    return (
        f"{rate:8.1f} per s   p50 {1000 * statistics.median(latencies):7.1f} ms   "
        f"p99 {1000 * pct(latencies, 99):7.1f} ms"
    )


async def count_rows(db_url: str, table: Table) -> int:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        await engine.dispose()


async def post_reports(session: aiohttp.ClientSession, n: int, concurrency: int) -> list[tuple[float, float, Any]]:
    """POST BODY n times over `concurrency` keep-alive connections: (sent at, latency, answer)
    for each; anything but a 202 raises.

    aiohttp, not httpx: httpx's pool tops out near 400 requests/s at 16 connections on this
    machine (a busy core, p99 over 200 ms), which would measure the client, not the server."""
    todo, done = iter(range(n)), []

    async def worker() -> None:
        for _ in todo:  # one iterator shared by every connection
            t0 = time.perf_counter()
            async with session.post("/v1/reports", json=BODY) as r:
                if r.status != 202:
                    raise RuntimeError(f"{r.url}: {r.status} {(await r.text())[:500]}")
                answer = await r.json()
            done.append((t0, time.perf_counter() - t0, answer))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done
