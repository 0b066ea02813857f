"""The figures' hourly rollup (dispatcher/rollup.py) follows a change that comes after an hour
was rolled up: a ticket claimed, its hour rolled up, then unclaimed hours later no longer counts
as claimed, on SQLite and PostgreSQL, with the services running and an injected clock. (The
figures' exactness, rolled up or not, is tests/integration/test_figures_exact.py.)"""

from datetime import timedelta

import pytest

from dispatcher.rollup import Roller
from services.storage.clocksql import hour_of, hour_start
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, file_report, open_ticket
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest):
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")


async def test_a_claim_taken_back_after_its_hour_was_rolled_up_is_no_longer_counted(base):
    async with running(base, clock=frozen_clock(), handlers=True, rollup_interval=3600) as app:
        roller = Roller(app.app.state.ctx.db, app.clock, settle=timedelta(0))
        body = {"category": "garbage", "description": "垃圾桶满了", "location": {"lat": 30.505, "lon": 114.305}}
        case = await file_report(app.client, {**body, "insist": True})
        ticket = await open_ticket(app.client, "U-G11", app.tokens("U-G11"), case["case_id"])
        since = hour_start(hour_of(app.clock.now()))
        r = await app.client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(app.tokens("U-G11")))
        assert r.status_code == 200, r.text

        async def claimed() -> int:
            query = {
                "since": since.isoformat(),
                "until": (app.clock.now() + timedelta(seconds=1)).isoformat(),
                "category": "garbage",
            }
            r = await app.client.get("/v1/ops/stats", headers=bearer(app.tokens()), params=query)
            assert r.status_code == 200, r.text
            return int(r.json()["claimed"])

        before = await eventually(claimed)  # the dispatcher has the claim
        app.clock.advance(timedelta(minutes=50))  # within the grid's response limit
        await roller.roll_once()
        app.clock.advance(timedelta(hours=1))
        assert (await roller.roll_once()).hours >= 1  # the claim's hour is rolled up
        assert await claimed() == before

        r = await app.client.post(f"/v1/tickets/{ticket['ticket_id']}/unclaim", headers=bearer(app.tokens("U-G11")))
        assert r.status_code == 200, r.text

        async def taken_back() -> bool:
            return await claimed() == before - 1

        await eventually(taken_back)  # the claim's hour is read from the rows until rolled up again
        assert (await roller.roll_once()).again >= 1
        assert await claimed() == before - 1
