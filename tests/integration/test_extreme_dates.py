"""Every date-time the API takes, at the edges of what a datetime holds, on SQLite and
PostgreSQL: the year 1 at +14:00 (before the year 1 in UTC), the year 9999 at -12:00 (after
it), a time without a zone where one is needed, and a cursor holding such a date. Each is a 4xx
naming the parameter (Open311 a 400 in its own format), never a 500."""

import base64
import json

import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer

pytestmark = pytest.mark.integration

EARLY = "0001-01-01T00:00:00+14:00"
LATE = "9999-12-31T23:59:59-12:00"
OPS_WINDOWS = (
    "/v1/ops/stats",
    "/v1/ops/stats/daily",
    "/v1/ops/breaches?state=all",
    "/v1/ops/satisfaction",
    "/v1/ops/scorecards?kind=grid",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest):
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")


@pytest.fixture
async def stack(base):
    async with running(base, clock=frozen_clock(), handlers=["U-G11"]) as app:
        yield app


def cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def named(r, parameter: str) -> None:
    assert r.status_code == 422, (r.request.url, r.status_code, r.text)
    assert any(p["loc"][-1] == parameter for p in r.json()["detail"]), r.text


async def test_the_ops_windows_refuse_dates_past_the_calendar_naming_the_parameter(stack):
    ops = bearer(stack.tokens())
    for path in (*OPS_WINDOWS, "/v1/ops/watch"):
        for parameter, value in (("since", EARLY), ("since", LATE), ("until", EARLY), ("until", LATE)):
            if path == "/v1/ops/watch" and parameter == "until":
                continue
            r = await stack.client.get(path, params={parameter: value}, headers={**ops, "Accept-Language": "zh-CN"})
            named(r, parameter)
        named(await stack.client.get(path, params={"since": "2026-11-01T00:00:00"}, headers=ops), "since")


async def test_the_staff_queue_refuses_a_due_time_without_a_zone_or_past_the_calendar(stack):
    handler = bearer(stack.tokens("U-G11"))
    for value in ("2026-11-01T00:00:00", EARLY, LATE):
        r = await stack.client.get("/v1/units/U-G11/tickets", params={"due_before": value}, headers=handler)
        named(r, "due_before")
    for value in (EARLY, LATE):
        r = await stack.client.get("/v1/units/U-G11/tickets", params={"cursor": cursor(value, "t")}, headers=handler)
        named(r, "cursor")


async def test_the_public_results_refuse_a_cursor_holding_a_date_past_the_calendar(stack):
    for value in (EARLY, LATE):
        named(await stack.client.get("/v1/public/results", params={"cursor": cursor(value, "c")}), "cursor")


async def test_open311_refuses_dates_past_the_calendar_in_its_own_format(stack):
    for path in ("/open311/v2/requests.json", "/open311/v2/servicerequestupdates.json"):
        for parameter in ("start_date", "end_date"):
            for value in (EARLY, LATE):
                r = await stack.client.get(path, params={parameter: value})
                assert r.status_code == 400, (path, parameter, value, r.status_code, r.text)
                [error] = r.json()
                assert parameter in error["description"], error
