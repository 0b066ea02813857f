"""SLA timers falling due together: `pending` timers in the dispatcher's table, the response
limits of `due` cases falling due at one moment, `dispatchers` processes on PostgreSQL. How
late each breach was recorded (p50/p99), and how long until all of them escalated. Checked:
every case breached and escalated exactly once."""

import asyncio
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import pct
from dispatcher.domain import Router
from dispatcher.tables import history
from dispatcher.tables import timers as timer_rows
from services.district.clock import SystemClock
from services.runtime.context import build_context
from services.runtime.settings import DATA_DIR, Settings
from tests.support.cluster import distributed
from tests.support.seed import seed_cases
from tests.support.servers import kafka_is_tansu

LIMIT = 60  # seconds: the bench policy's grid response limit
SEED_BATCH = 5000
STARTUP = 20  # seconds the dispatchers get to start before the wave falls due


def bench_policy(path: Path) -> Path:
    raw = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    tiers = {t: {"response": f"{LIMIT}s", "resolution": "1h"} for t in ("grid", "community", "street", "bureau")}
    raw["sla"] = {p: tiers for p in ("normal", "urgent", "emergency")}
    for cat in raw["categories"]:
        cat.pop("sla", None)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


async def seed(env: dict[str, str], due: int, pending: int) -> tuple[list[str], datetime, int]:
    """Seed the background (cases assigned a day from now: none of their timers falls due
    during the run), then the wave; returns the wave's case ids, when it falls due, and how
    many timers are pending in all."""
    settings = Settings(
        database_url=env["GRIDCALL_DATABASE_URL"],
        kafka_bootstrap_servers=env["GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"],
        policy_file=Path(env["GRIDCALL_POLICY_FILE"]),
    )
    ctx = build_context(settings)
    router = Router(ctx.jurisdiction, ctx.policy)
    later = SystemClock().now() + timedelta(days=1)
    timers_per_case = 4  # response and resolution limits, each with its warning
    for start in range(0, pending // timers_per_case, SEED_BATCH):
        await seed_cases(ctx.db, router, min(SEED_BATCH, pending // timers_per_case - start), later)
    moment = SystemClock().now() + timedelta(seconds=STARTUP + due / 2000)
    ids: list[str] = []
    for start in range(0, due, SEED_BATCH):
        ids += await seed_cases(ctx.db, router, min(SEED_BATCH, due - start), moment - timedelta(seconds=LIMIT))
    async with ctx.db.sessions() as s:
        total = int(await s.scalar(select(func.count()).select_from(timer_rows)) or 0)
    await ctx.db.dispose()
    return ids, moment, total


async def lateness(db_url: str, ids: list[str], moment: datetime) -> dict[str, Any]:
    """How late each breach was recorded, and whether each case escalated exactly once."""
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(history.c.case_id, history.c.type, history.c.at, history.c.details).where(
                        history.c.case_id.in_(ids), history.c.type.in_(["case.sla_breached", "case.escalated"])
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    breaches = [r for r in rows if r.type == "case.sla_breached"]
    per_case = Counter((r.case_id, r.type) for r in rows)
    if len(per_case) != 2 * len(ids) or set(per_case.values()) != {1}:
        raise SystemExit("timers: a breach was not escalated exactly once")
    late = [(r.at - datetime.fromisoformat(r.details["due_at"])).total_seconds() for r in breaches]
    last = max(r.at for r in breaches)
    return {
        "due_together": len(ids),
        "lateness_p50_s": pct(late, 50),
        "lateness_p99_s": pct(late, 99),
        "all_escalated_after_s": (last - moment).total_seconds(),
        "escalated_exactly_once": True,
    }


async def _escalated(db_url: str, ids: list[str]) -> int:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).where(history.c.case_id.in_(ids), history.c.type == "case.escalated")
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


def measure(db_url: str, bootstrap: str, tmp: Path, *, due: int, pending: int, dispatchers: int = 2) -> dict[str, Any]:
    """Seed `pending` timers, `due` of them falling due together, start the dispatchers and
    wait until every one of those cases escalated."""
    env = {
        "GRIDCALL_ENV": "test",
        "GRIDCALL_DATABASE_URL": db_url,
        "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": str(not kafka_is_tansu()).lower(),
        "GRIDCALL_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
        "GRIDCALL_POLICY_FILE": str(bench_policy(tmp / "policy.yaml")),
        "GRIDCALL_TIMER_INTERVAL": "0.2",
    }
    t0 = time.monotonic()
    ids, moment, total = asyncio.run(seed(env, due, pending))
    seeded = time.monotonic() - t0
    with ExitStack() as stack:
        for i in range(dispatchers):
            (tmp / f"dispatcher{i}").mkdir()
            stack.enter_context(distributed(env, tmp / f"dispatcher{i}", services=("dispatcher",)))
        deadline = time.monotonic() + 1800
        while asyncio.run(_escalated(db_url, ids)) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit("timers: not every breach escalated within 30 minutes")
            time.sleep(0.5)
    return {
        "pending": total,
        "seeded_in_s": seeded,
        "dispatchers": dispatchers,
        **asyncio.run(lateness(db_url, ids, moment)),
    }
