"""A 202 means durable under group commit too: intake killed with -9 while reports stream in
(batches being written, answers on their way) loses none it answered."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from intake.tables import case_views, reports
from tests.support.cluster import distributed
from tests.support.journey import STREETLIGHT_G11
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

CLIENTS = 24


async def stream_reports(client: httpx.AsyncClient, answered: list[dict[str, Any]], n: int) -> None:
    """Post reports one after another until the server goes away."""
    for i in range(100_000):
        body = {**STREETLIGHT_G11, "description": f"client {n}, report {i}", "insist": True}
        try:
            r = await client.post("/v1/reports", json=body)
        except httpx.HTTPError:
            return
        assert r.status_code == 202, r.text
        answered.append(r.json())


async def stored_case_ids(db_url: str, case_ids: list[str]) -> tuple[set[str], set[str]]:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            filed = set((await conn.scalars(select(reports.c.case_id).where(reports.c.case_id.in_(case_ids)))).all())
            viewed = set(
                (await conn.scalars(select(case_views.c.case_id).where(case_views.c.case_id.in_(case_ids)))).all()
            )
        return filed, viewed
    finally:
        await engine.dispose()


async def test_a_kill_9_while_reports_stream_in_loses_nothing_answered_202(distributed_env, pg_url, tmp_path):
    answered: list[dict[str, Any]] = []
    with distributed(distributed_env, tmp_path, services=("intake",)) as cluster:
        intake = cluster["intake"]
        async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
            streams = [asyncio.create_task(stream_reports(client, answered, n)) for n in range(CLIENTS)]

            async def enough() -> bool:
                return len(answered) >= 300

            await eventually(enough, timeout=60)
            intake.kill()
            await asyncio.gather(*streams)
        intake.start()
        case_ids = [a["case_id"] for a in answered]
        filed, viewed = await stored_case_ids(pg_url, case_ids)
        assert set(case_ids) == filed == viewed, f"{len(set(case_ids) - filed)} answered 202 but not stored"
        async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
            for a in answered[-CLIENTS * 2 :]:  # the last answers before the kill: the batches nearest to it
                r = await client.get(f"/v1/cases/{a['case_id']}", headers={"X-Tracking-Token": a["tracking_token"]})
                assert r.status_code == 200, r.text
