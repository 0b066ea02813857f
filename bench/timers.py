"""Timer benchmark: 100,000 pending SLA timers, 10,000 cases' response limits falling due
together, two dispatcher processes on PostgreSQL. Prints how late breaches fire (p50/p99)
and how long the 10,000 escalations take.

Run: make bench  (or python -m bench.timers --due 10000 --pending 100000)
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import func, select

from dispatcher.domain import Router
from dispatcher.tables import history
from dispatcher.tables import timers as timer_rows
from gridcall.migrate import upgrade
from services.clock import SystemClock
from services.runtime import build_context
from services.settings import DATA_DIR, Settings
from tests.support.cluster import distributed
from tests.support.seed import seed_cases
from tests.support.servers import admin_postgres, kafka_broker, kafka_is_tansu, scratch_database

LIMIT = 60  # seconds: the bench policy's grid response limit


def bench_policy(path: Path) -> Path:
    raw = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    tiers = {t: {"response": f"{LIMIT}s", "resolution": "1h"} for t in ("grid", "community", "street", "bureau")}
    raw["sla"] = {p: tiers for p in ("normal", "urgent", "emergency")}
    for cat in raw["categories"]:
        cat.pop("sla", None)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def seed(env: dict[str, str], due: int, pending: int, lead: float) -> tuple[list[str], datetime]:
    settings = Settings(
        database_url=env["GRIDCALL_DATABASE_URL"],
        kafka_bootstrap_servers=env["GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"],
        policy_file=Path(env["GRIDCALL_POLICY_FILE"]),
    )
    ctx = build_context(settings)
    router = Router(ctx.jurisdiction, ctx.policy)
    now = SystemClock().now()
    # Background: cases assigned a day from now, so none of their timers falls due during the run.
    for start in range(0, pending // 4, 5000):
        await seed_cases(ctx.db, router, min(5000, pending // 4 - start), now + timedelta(days=1))
    # The wave: response limits of `due` cases all fall due at one moment, `lead` seconds from now.
    moment = now + timedelta(seconds=lead)
    ids: list[str] = []
    for start in range(0, due, 5000):
        ids += await seed_cases(ctx.db, router, min(5000, due - start), moment - timedelta(seconds=LIMIT))
    async with ctx.db.sessions() as s:
        total = await s.scalar(select(func.count()).select_from(timer_rows))
    print(f"pending timers: {total:,}; {due:,} response limits fall due at {moment:%H:%M:%S}")
    await ctx.db.dispose()
    return ids, moment


async def measure(env: dict[str, str], ids: list[str], moment: datetime) -> None:
    ctx = build_context(Settings(database_url=env["GRIDCALL_DATABASE_URL"], kafka_bootstrap_servers="unused:9"))
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                select(history.c.at, history.c.details).where(
                    history.c.case_id.in_(ids), history.c.type == "case.sla_breached"
                )
            )
        ).all()
    await ctx.db.dispose()
    late = [(r.at - datetime.fromisoformat(r.details["due_at"])).total_seconds() for r in rows]
    last = max(r.at for r in rows)
    print(f"breaches fired: {len(rows):,} (each escalated once)")
    print(f"lateness:  p50 {statistics.median(late):7.2f} s   p99 {pct(late, 99):7.2f} s   max {max(late):7.2f} s")
    print(
        f"all {len(rows):,} escalations done {(last - moment).total_seconds():.1f} s after they fell due "
        f"({len(rows) / max((last - moment).total_seconds(), 1e-9):.0f} escalations/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--dispatchers", type=int, default=2)
    args = parser.parse_args()
    with (
        admin_postgres() as admin,
        scratch_database(admin) as db_url,
        kafka_broker() as broker,
        tempfile.TemporaryDirectory() as tmp,
    ):
        upgrade(db_url)
        env = {
            "GRIDCALL_ENV": "test",
            "GRIDCALL_DATABASE_URL": db_url,
            "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": str(not kafka_is_tansu()).lower(),
            "GRIDCALL_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
            "GRIDCALL_POLICY_FILE": str(bench_policy(Path(tmp) / "policy.yaml")),
            "GRIDCALL_TIMER_INTERVAL": "0.2",
        }
        t0 = time.monotonic()
        ids, moment = asyncio.run(seed(env, args.due, args.pending, lead=45))
        print(f"seeded in {time.monotonic() - t0:.0f} s")
        logs = Path(tmp)
        clusters = []
        try:
            for i in range(args.dispatchers):
                (logs / str(i)).mkdir()
                c = distributed(env, logs / str(i), services=("dispatcher",))
                c.__enter__()
                clusters.append(c)

            async def wait_done() -> None:
                ctx = build_context(Settings(database_url=db_url, kafka_bootstrap_servers="unused:9"))
                while True:
                    async with ctx.db.sessions() as s:
                        n = await s.scalar(
                            select(func.count()).where(history.c.case_id.in_(ids), history.c.type == "case.escalated")
                        )
                    if (n or 0) >= len(ids):
                        break
                    await asyncio.sleep(0.5)
                await ctx.db.dispose()

            asyncio.run(asyncio.wait_for(wait_done(), timeout=1800))
        finally:
            for c in reversed(clusters):
                c.__exit__(None, None, None)
        asyncio.run(measure(env, ids, moment))


if __name__ == "__main__":
    main()
