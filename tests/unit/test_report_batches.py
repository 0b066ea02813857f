"""Group commit at intake as clients see it (in-process, embedded: SQLite and the local bus):
requests sent together are written in one transaction, each answered after it, and one
request's error stays that request's."""

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from intake import tables
from intake.bootstrap import bootstrap as intake_bootstrap
from intake.keys import create_api_key
from services.runtime.app import create_app
from services.runtime.context import build_context
from tests.support.apps import lifespan
from tests.support.journey import STREETLIGHT_G11

ELSEWHERE = {"category": "streetlight", "description": "Dark all night", "location": {"lat": 30.5151, "lon": 114.3247}}


@pytest.fixture
async def intake(embedded_settings):
    """Intake alone, its writer waiting 50 ms for more requests so that the requests a test sends
    together share a batch; `client.batches` lists the size of every batch written."""
    ctx = build_context(embedded_settings.model_copy(update={"group_commit_linger": 0.05}))
    parts = intake_bootstrap(ctx)
    [commits] = parts.group_commits
    write, batches = commits.apply, []

    async def recorded(filings):
        batches.append(len(filings))
        return await write(filings)

    commits.apply = recorded
    app = create_app(ctx, [parts], title="gridcall intake")
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client,
    ):
        client.batches, client.ctx = batches, ctx  # type: ignore[attr-defined]
        yield client


async def count(client, table) -> int:
    async with client.ctx.db.sessions() as s:
        return await s.scalar(select(func.count()).select_from(table))


async def test_a_key_reused_with_another_body_gets_409_and_its_batch_mates_are_filed(intake):
    key = {"Idempotency-Key": "k-batch"}
    first, reused, other = await asyncio.gather(
        intake.post("/v1/reports", json=STREETLIGHT_G11, headers=key),
        intake.post("/v1/reports", json={**STREETLIGHT_G11, "description": "not the same"}, headers=key),
        intake.post("/v1/reports", json=ELSEWHERE),
    )
    assert intake.batches == [3]
    assert (first.status_code, reused.status_code, other.status_code) == (202, 409, 202)
    assert "different request body" in reused.json()["detail"]
    assert await count(intake, tables.reports) == await count(intake, tables.case_views) == 2
    for answer in (first.json(), other.json()):
        r = await intake.get(f"/v1/cases/{answer['case_id']}", headers={"X-Tracking-Token": answer["tracking_token"]})
        assert r.status_code == 200


async def test_one_key_twice_in_a_batch_makes_one_case(intake):
    key = {"Idempotency-Key": "k-twice"}
    answers = await asyncio.gather(*(intake.post("/v1/reports", json=STREETLIGHT_G11, headers=key) for _ in range(2)))
    assert intake.batches == [2]
    assert [r.status_code for r in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert await count(intake, tables.reports) == 1


async def test_the_second_report_of_one_problem_in_a_batch_joins_the_first(intake):
    first, second = await asyncio.gather(
        intake.post("/v1/reports", json=STREETLIGHT_G11),
        intake.post("/v1/reports", json={**STREETLIGHT_G11, "description": "Still piled up"}),
    )
    assert intake.batches == [2]
    assert first.json()["case_id"] == second.json()["case_id"]
    assert not first.json()["linked_to_existing"] and second.json()["linked_to_existing"]
    r = await intake.get(
        f"/v1/cases/{second.json()['case_id']}", headers={"X-Tracking-Token": second.json()["tracking_token"]}
    )
    assert r.json()["reporters"] == 2
    assert [e["type"] for e in r.json()["timeline"]] == ["received", "reported_again"]


async def test_open311_requests_share_the_batch_and_its_rules(intake):
    key = await create_api_key(intake.ctx.db, intake.ctx.clock, "batch test app")
    form = {"api_key": key, "service_code": "garbage", "lat": "30.505", "long": "114.305"}
    resident, open311 = await asyncio.gather(
        intake.post("/v1/reports", json=STREETLIGHT_G11), intake.post("/open311/v2/requests.json", data=form)
    )
    assert intake.batches == [2]
    assert resident.status_code == 202 and open311.status_code == 200, open311.text
    assert open311.json()[0]["service_request_id"] == resident.json()["case_id"]
    assert await count(intake, tables.case_views) == 1


async def test_a_report_refused_by_its_own_checks_never_reaches_the_batch(intake):
    good, bad = await asyncio.gather(
        intake.post("/v1/reports", json=STREETLIGHT_G11),
        intake.post("/v1/reports", json={**STREETLIGHT_G11, "category": "ufo"}),
    )
    assert (good.status_code, bad.status_code) == (202, 422)
    assert intake.batches == [1]
