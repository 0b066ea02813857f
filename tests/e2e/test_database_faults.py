"""PostgreSQL drops the services' connections (`pg_terminate_backend`) while reports stream in,
the services running as separate processes on PostgreSQL and the broker. Nothing accepted is
lost, nothing is doubled, nothing good is dead-lettered, and nobody gets a 500."""

import asyncio
import itertools
import time
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from dispatcher import tables as dispatcher_tables
from gridcall.services import METADATA
from intake import tables as intake_tables
from services.storage.db import Database
from tests.support.cluster import distributed
from tests.support.journey import STREETLIGHT_G11
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def stream_reports(client: httpx.AsyncClient, per_second: float, seconds: float) -> list[httpx.Response]:
    """Reports at a steady rate, each its own case (`insist`), whatever the answers take."""
    start = time.monotonic()

    async def one(n: int) -> httpx.Response:
        await asyncio.sleep(max(0.0, start + n / per_second - time.monotonic()))
        body = {**STREETLIGHT_G11, "description": f"report {n}", "insist": True}
        return await client.post("/v1/reports", json=body)

    return await asyncio.gather(*(one(n) for n in range(int(per_second * seconds))))


@asynccontextmanager
async def terminating(pg_url: str, every: float, where: str, aim: str = "true"):
    """Terminate the backends of the test database that match `where`, every `every` seconds,
    each round as soon as one matching `aim` is seen (waiting at most half a period); yields
    the list of how many each round terminated."""
    admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    ours = f"datname = current_database() AND pid <> pg_backend_pid() AND {where}"
    rounds: list[int] = []

    async def loop() -> None:
        start = time.monotonic()
        for n in itertools.count(1):
            await asyncio.sleep(max(0.0, start + n * every - time.monotonic()))
            deadline = time.monotonic() + every / 2
            while time.monotonic() < deadline:
                if await admin.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {ours} AND {aim}"):
                    break
                await asyncio.sleep(0.005)
            rounds.append(
                await admin.fetchval(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {ours}")
            )

    task = asyncio.create_task(loop())
    try:
        yield rounds
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await admin.close()


# The dispatcher's consumer in the middle of a statement: where a dropped connection used to
# arrive as a plain DBAPIError that was not taken for transient, and a good event was parked.
CONSUMER_MID_STATEMENT = "state = 'active' AND (query LIKE '%dispatcher_inbox%' OR query LIKE '%dispatcher_cases%')"


async def count(db: Database, table: Any, *where: Any) -> int:
    async with db.sessions() as s:
        return await s.scalar(select(func.count()).select_from(table).where(*where)) or 0


async def parked_anywhere(db: Database) -> int:
    return sum([await count(db, m.tables[f"{name}_deadletters"]) for name, m in METADATA.items()])


async def test_intake_keeps_every_accepted_report_and_never_answers_500_while_its_connections_drop(
    distributed_env, pg_url, tmp_path
):
    db = Database(pg_url)
    try:
        with distributed(distributed_env, tmp_path, services=("intake",)) as cluster:
            async with (
                httpx.AsyncClient(base_url=cluster["intake"].url, timeout=30) as client,
                terminating(pg_url, every=0.4, where="true") as rounds,
            ):
                answers = await stream_reports(client, per_second=40, seconds=8)
        statuses = [r.status_code for r in answers]
        assert sum(rounds) > 0, "no backend was terminated: the test tested nothing"
        assert set(statuses) <= {202, 503}, sorted(set(statuses))
        assert all(int(r.headers["Retry-After"]) > 0 for r in answers if r.status_code == 503)
        accepted = [r.json()["case_id"] for r in answers if r.status_code == 202]
        assert len(accepted) > len(answers) // 2
        reports = intake_tables.reports
        assert await count(db, reports, reports.c.case_id.in_(accepted)) == len(accepted)  # every 202 kept
    finally:
        await db.dispose()


async def test_every_report_is_routed_once_while_the_dispatchers_connections_drop(distributed_env, pg_url, tmp_path):
    """The dispatcher's backends (application_name gridcall-dispatcher) terminated every 2 s for
    20 s, while its consumer is at work: it retries, it never dead-letters a good event nor
    routes one twice."""
    db = Database(pg_url)
    # One record per transaction: a dropped connection then decides a record's fate on its own
    # (a failed batch is taken again record by record, which would give it a second chance).
    env = {**distributed_env, "GRIDCALL_CONSUMER_BATCH": "1"}
    try:
        with distributed(env, tmp_path, services=("intake", "dispatcher")) as cluster:
            async with (
                httpx.AsyncClient(base_url=cluster["intake"].url, timeout=30) as client,
                terminating(
                    pg_url, every=2, where="application_name = 'gridcall-dispatcher'", aim=CONSUMER_MID_STATEMENT
                ) as rounds,
            ):
                answers = await stream_reports(client, per_second=15, seconds=20)
            assert [r.status_code for r in answers] == [202] * len(answers)
            assert len(rounds) >= 9 and sum(rounds) > 0, rounds
            case_ids = [r.json()["case_id"] for r in answers]
            cases, views = dispatcher_tables.cases, intake_tables.case_views

            async def all_routed() -> bool:
                return await count(db, views, views.c.case_id.in_(case_ids), views.c.status == "assigned") == len(
                    case_ids
                )

            await eventually(all_routed, timeout=60, interval=0.5)
        assert await count(db, cases, cases.c.case_id.in_(case_ids)) == len(case_ids)
        assignments, history = dispatcher_tables.assignments, dispatcher_tables.history
        assert await count(db, assignments, assignments.c.case_id.in_(case_ids)) == len(case_ids)
        assigned = history.c.type == "case.assigned"
        assert await count(db, history, history.c.case_id.in_(case_ids), assigned) == len(case_ids)
        timeline = intake_tables.timeline
        assert await count(db, timeline, timeline.c.case_id.in_(case_ids), timeline.c.type == "assigned") == len(
            case_ids
        )
        assert await parked_anywhere(db) == 0
    finally:
        await db.dispose()
