"""What the benchmarks share: the services' settings under load, percentiles, row counts."""

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


async def count_rows(db_url: str, table: Table) -> int:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        await engine.dispose()
