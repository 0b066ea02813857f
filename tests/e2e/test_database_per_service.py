"""Each service on a database of its own (GRIDCALL_<SERVICE>_DATABASE_URL), as processes on
PostgreSQL and the broker: `gridcall migrate` (the migration job's command) puts each service's
tables in its own database and nowhere else, and a case goes the whole loop with the shared
GRIDCALL_DATABASE_URL pointing at an empty database no service may touch: a service that read
another's tables, or fell back to the shared database, would fail."""

import asyncio
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from contextlib import ExitStack

import asyncpg
import httpx
import pytest

from tests.support.cluster import SERVICES, base_env, distributed, distributed_settings, gridcall_args
from tests.support.journey import TEST_SECRET, bearer, case_in_status, file_report, open_ticket
from tests.support.servers import scratch_database
from tests.support.staff import enrol
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

IN_G32 = {"lat": 30.5151, "lon": 114.3247}


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return {r["table_name"] for r in rows}
    finally:
        await conn.close()


@pytest.fixture
def databases(pg_admin) -> Iterator[dict[str, str]]:
    """A database for each service, and one more for GRIDCALL_DATABASE_URL, left empty."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(scratch_database(pg_admin)) for name in (*SERVICES, "shared")}


async def test_four_services_on_four_databases_go_the_whole_loop(databases, broker, topic_prefix, tmp_path):
    own, shared = {s: databases[s] for s in SERVICES}, databases["shared"]
    env = distributed_settings(
        shared, broker.bootstrap, topic_prefix, **{f"GRIDCALL_{s.upper()}_DATABASE_URL": own[s] for s in SERVICES}
    )
    migrate = await asyncio.create_subprocess_exec(*gridcall_args("migrate"), env=base_env(env), stderr=PIPE)
    _, said = await migrate.communicate()
    assert migrate.returncode == 0, said.decode()
    for service, url in own.items():
        found = await tables(url) - {"alembic_version"}
        assert found and all(t.startswith(f"{service}_") for t in found), (service, sorted(found))
    assert await tables(shared) == set()
    staff = await enrol(own["departments"], TEST_SECRET, ["U-G32"])

    with distributed(env, tmp_path) as cluster:
        async with (
            httpx.AsyncClient(base_url=cluster["intake"].url, timeout=10) as intake,
            httpx.AsyncClient(base_url=cluster["departments"].url, timeout=10) as departments,
            httpx.AsyncClient(base_url=cluster["notifier"].url, timeout=10) as notifier,
        ):
            for process in cluster.processes.values():
                async with httpx.AsyncClient(base_url=process.url, timeout=5) as probe:
                    assert (await probe.get("/readyz")).json()["status"] == "ready", process.name
            body = {
                "category": "noise",
                "description": "半夜电钻声",
                "location": IN_G32,
                "contact": {"phone": "13800000000"},
            }
            case = await file_report(intake, body)
            ticket = await open_ticket(departments, "U-G32", staff("U-G32"), case["case_id"], timeout=60)
            handler = bearer(staff("U-G32"))
            assert (await departments.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=handler)).is_success
            r = await departments.post(
                f"/v1/tickets/{ticket['ticket_id']}/resolve", headers=handler, json={"note": "已劝停"}
            )
            assert r.is_success, r.text
            await case_in_status(intake, case, "resolved", timeout=60)

            async def told() -> list[str] | None:
                r = await notifier.get(
                    "/v1/notifications", params={"case_id": case["case_id"]}, headers=bearer(staff())
                )
                kinds = [n["kind"] for n in r.json() if n["audience"] == "resident"]
                return kinds if "case.resolved" in kinds else None

            await eventually(told, timeout=30)
    assert await tables(shared) == set()
