"""Due SLA timers shared by two dispatcher processes on PostgreSQL; one is killed with -9
mid-batch. Every breach must still escalate exactly once.

`make test` runs it with 600 cases (1,200 due timers); `make fault` with 10,000 cases
(GRIDCALL_FAULT_CASES)."""

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dispatcher.domain import Router
from dispatcher.tables import assignments, history
from services.district.clock import SystemClock
from services.runtime.context import build_context
from tests.support.cluster import distributed
from tests.support.seed import seed_cases
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("GRIDCALL_FAULT_CASES", "600"))


async def test_two_dispatchers_share_due_timers_and_survive_a_kill_9(pg_settings, distributed_env, tmp_path):
    ctx = build_context(pg_settings)
    try:
        # Seeded a week ago: every case's grid response limit has long passed.
        ids = await seed_cases(
            ctx.db, Router(ctx.jurisdiction, ctx.policy), CASES, SystemClock().now() - timedelta(days=7)
        )

        async def escalated() -> int:
            async with ctx.db.sessions() as s:
                return await s.scalar(
                    select(func.count(func.distinct(history.c.case_id))).where(
                        history.c.case_id.in_(ids), history.c.type == "case.escalated"
                    )
                )

        async def at_least(n: int) -> bool:
            return await escalated() >= n

        env = {**distributed_env, "GRIDCALL_TIMER_LEASE": "3", "GRIDCALL_TIMER_INTERVAL": "0.2"}
        started = time.monotonic()
        with distributed(env, tmp_path, services=("dispatcher",)) as first:
            (tmp_path / "second").mkdir()
            with distributed(env, tmp_path / "second", services=("dispatcher",)):
                await eventually(lambda: at_least(CASES // 5), timeout=300, interval=0.1)
                first["dispatcher"].kill()  # mid-batch: its leased timers must be taken over
                killed_at = await escalated()
                await eventually(lambda: at_least(CASES), timeout=900, interval=0.5)
        print(
            f"\n{CASES} breaches escalated in {time.monotonic() - started:.1f}s; one dispatcher killed at {killed_at}"
        )

        async with ctx.db.sessions() as s:
            per_case = (
                await s.execute(
                    select(history.c.type, func.count()).where(history.c.case_id.in_(ids)).group_by(history.c.type)
                )
            ).all()
            community = await s.scalar(
                select(func.count()).where(assignments.c.case_id.in_(ids), assignments.c.tier == "community")
            )
        counts = dict(per_case)
        assert counts["case.sla_breached"] == CASES  # one breach per case: none doubled, none lost
        assert counts["case.escalated"] == CASES
        assert counts["case.sla_warning"] == CASES
        assert community == CASES
    finally:
        await ctx.db.dispose()
