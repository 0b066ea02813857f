"""The public API in embedded mode, in-process: real SQLite, real local bus, every service."""

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from intake import tables as intake_tables
from intake.keys import create_api_key
from intake.tables import case_views, reports
from services.district.clock import SystemClock
from services.runtime.settings import Settings
from services.storage.db import Database
from services.web.auth import Authenticator
from tests.support.apps import running
from tests.support.journey import STREETLIGHT_G11, bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually


@pytest.fixture
async def client(embedded_settings):
    async with running(embedded_settings, handlers=True) as app:
        c = app.client
        c.auth_ = Authenticator(embedded_settings.secret_key.get_secret_value(), SystemClock())  # type: ignore[attr-defined]
        c.tokens_ = app.tokens  # type: ignore[attr-defined]
        yield c


def token(client, unit_id=None) -> str:
    return client.tokens_(unit_id)


async def test_categories_and_grids_are_listed(client):
    cats = (await client.get("/v1/categories")).json()
    assert {"garbage", "streetlight", "bus_stop"} <= {c["code"] for c in cats}
    grids = (await client.get("/v1/grids")).json()
    g11 = next(g for g in grids if g["grid_id"] == "G11")
    assert g11 == {
        "grid_id": "G11",
        "name": "Maple Lane Grid 1",
        "name_zh": "枫林社区第一网格",
        "community_id": "C1",
        "street_id": "S1",
        "unit_id": "U-G11",
        "centroid": {"lat": 30.505, "lon": 114.305},
    }


async def test_the_whole_loop_in_one_process(client):
    case = await file_report(client)
    assert case["status"] == "received"
    view = await case_in_status(client, case, "assigned")
    assert (view["tier"], view["unit_id"]) == ("grid", "U-G11")

    staff = token(client, "U-G11")
    ticket = await open_ticket(client, "U-G11", staff, case["case_id"])
    r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
    assert r.status_code == 200 and r.json()["status"] == "claimed"
    await case_in_status(client, case, "claimed")
    r = await client.post(
        f"/v1/tickets/{ticket['ticket_id']}/resolve", headers=bearer(staff), json={"note": "Cleared by 10:00"}
    )
    assert r.status_code == 200, r.text
    view = await case_in_status(client, case, "resolved")
    assert [e["type"] for e in view["timeline"]] == ["received", "assigned", "claimed", "resolved"]
    assert view["timeline"][-1]["result"] == "Cleared by 10:00"

    async def resident_told_each_step():
        r = await client.get("/v1/notifications", params={"case_id": case["case_id"]}, headers=bearer(token(client)))
        kinds = [n["kind"] for n in r.json() if n["audience"] == "resident"]
        return kinds if kinds == ["case.assigned", "case.claimed", "case.resolved", "case.visit"] else None

    await eventually(resident_told_each_step)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"category": "ufo"}, "category", "unknown category 'ufo'"),
        ({"location": {"lat": 31.9, "lon": 118.8}}, "location", "outside every grid"),
        ({"description": ""}, "description", "at least 1 character"),
        ({"description": "   "}, "description", "cannot be blank"),
        ({"location": {"lat": 95, "lon": 114.3}}, "location", "less than or equal to 90"),
        ({"contact": {"email": "not-an-email"}}, "contact", "pattern"),
        ({"priority": "whenever"}, "priority", "normal"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
async def test_bad_reports_get_422_naming_what_to_fix(client, change, field, message):
    r = await client.post("/v1/reports", json={**STREETLIGHT_G11, **change})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert field in error["loc"]
    assert message in error["msg"]


async def test_a_report_missing_its_location_is_422(client):
    body = {k: v for k, v in STREETLIGHT_G11.items() if k != "location"}
    r = await client.post("/v1/reports", json=body)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "location"] and error["msg"] == "Field required"


async def test_a_malformed_json_body_is_422_not_500(client):
    r = await client.post("/v1/reports", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


async def test_a_rejected_report_leaves_nothing_behind(client, embedded_settings):
    for bad in ({"category": "ufo"}, {"location": {"lat": 0, "lon": 0}}, {"description": ""}):
        assert (await client.post("/v1/reports", json={**STREETLIGHT_G11, **bad})).status_code == 422
    db = Database(embedded_settings.db_url)
    try:
        async with db.sessions() as s:
            for table in (reports, case_views, intake_tables.outbox):
                assert await s.scalar(select(func.count()).select_from(table)) == 0
    finally:
        await db.dispose()


async def test_same_idempotency_key_and_body_returns_the_same_case(client):
    headers = {"Idempotency-Key": "k-123"}
    first = await client.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)
    again = await client.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()


async def test_same_idempotency_key_with_another_body_is_409(client):
    headers = {"Idempotency-Key": "k-456"}
    assert (await client.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)).status_code == 202
    r = await client.post("/v1/reports", json={**STREETLIGHT_G11, "description": "something else"}, headers=headers)
    assert r.status_code == 409
    assert "different request body" in r.json()["detail"]


async def test_an_idempotency_key_is_the_clients_own_and_never_answers_another(embedded_settings):
    """Two clients that happen to pick one key (and send one body) make two reports, and neither
    gets the other's tracking token; a client with an issued API key has keys of its own too."""
    async with running(embedded_settings) as started:
        app, headers = started.app, {"Idempotency-Key": "report-1"}

        def at(host: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 4000)), base_url="http://t")

        async with at("10.0.0.1") as one, at("10.0.0.2") as other:
            mine = (await one.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)).json()
            theirs = (await other.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)).json()
            assert theirs["tracking_token"] != mine["tracking_token"]
            assert theirs["linked_to_existing"]  # a report of its own, which joined the first case
            again = await one.post("/v1/reports", json=STREETLIGHT_G11, headers=headers)
            assert again.json() == mine  # a retry from the same client is still answered as the first time
            key = await create_api_key(app.state.ctx.db, SystemClock(), "console 9")
            console = {**headers, "X-API-Key": key}
            keyed = (await one.post("/v1/reports", json=STREETLIGHT_G11, headers=console)).json()
            assert keyed["tracking_token"] not in (mine["tracking_token"], theirs["tracking_token"])
            assert (await other.post("/v1/reports", json=STREETLIGHT_G11, headers=console)).json() == keyed


async def test_concurrent_retries_with_one_key_make_one_case(client):
    headers = {"Idempotency-Key": "k-race"}
    answers = await asyncio.gather(
        *(client.post("/v1/reports", json=STREETLIGHT_G11, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["case_id"] for r in answers}) == 1


async def test_a_case_with_a_wrong_or_missing_token_is_404_like_a_missing_case(client):
    case = await file_report(client)
    wrong = await client.get(f"/v1/cases/{case['case_id']}", headers={"X-Tracking-Token": "guess"})
    missing = await client.get(f"/v1/cases/{case['case_id']}")
    nonexistent = await client.get("/v1/cases/no-such-case", headers={"X-Tracking-Token": "guess"})
    assert wrong.status_code == missing.status_code == nonexistent.status_code == 404
    assert wrong.json() == missing.json() == nonexistent.json()


async def test_claiming_a_claimed_ticket_is_409(client):
    case = await file_report(client)
    staff = token(client, "U-G11")
    ticket = await open_ticket(client, "U-G11", staff, case["case_id"])
    url = f"/v1/tickets/{ticket['ticket_id']}/claim"
    results = await asyncio.gather(*(client.post(url, headers=bearer(staff)) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [200, 409, 409, 409]
    assert "already claimed" in next(r for r in results if r.status_code == 409).json()["detail"]


async def test_resolving_before_claiming_is_409_and_a_blank_note_is_422(client):
    case = await file_report(client)
    staff = token(client, "U-G11")
    ticket = await open_ticket(client, "U-G11", staff, case["case_id"])
    url = f"/v1/tickets/{ticket['ticket_id']}/resolve"
    r = await client.post(url, headers=bearer(staff), json={"note": "done"})
    assert r.status_code == 409 and "claim the ticket" in r.json()["detail"]
    await client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
    r = await client.post(url, headers=bearer(staff), json={"note": "  "})
    assert r.status_code == 422


async def test_staff_act_only_on_their_own_units_tickets(client):
    case = await file_report(client)
    ticket = await open_ticket(client, "U-G11", token(client, "U-G11"), case["case_id"])
    other = token(client, "U-G12")
    r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(other))
    assert r.status_code == 403
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(other))
    assert r.status_code == 403
    assert (await client.post("/v1/tickets/nope/claim", headers=bearer(other))).status_code == 404


async def test_staff_endpoints_need_a_valid_token(client):
    assert (await client.get("/v1/units/U-G11/tickets")).status_code == 401
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer("forged.token.value"))
    assert r.status_code == 401
    forged = Authenticator("another-secret-of-the-right-length-0123", SystemClock()).issue(
        "staff", unit_id="U-G11", staff_id="st-forged"
    )
    assert (await client.get("/v1/units/U-G11/tickets", headers=bearer(forged))).status_code == 401
    r = await client.get("/v1/notifications", params={"case_id": "x"}, headers=bearer(token(client, "U-G11")))
    assert r.status_code == 403


async def test_health(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert set(r.json()["services"]) == {"intake", "dispatcher", "departments", "notifier"}


async def test_a_client_over_its_rate_gets_429_with_retry_after(embedded_settings):
    async with running(embedded_settings, rate_limit="3/minute") as started:
        app, c = started.app, started.client
        for _ in range(3):
            assert (await c.post("/v1/reports", json=STREETLIGHT_G11)).status_code == 202
        r = await c.post("/v1/reports", json=STREETLIGHT_G11)
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert "at most 3 per 1 minute" in r.json()["detail"]
        # an invented API key is no way around the limit: it counts against the address
        invented = await c.post("/v1/reports", json=STREETLIGHT_G11, headers={"X-API-Key": "console-7"})
        assert invented.status_code == 429
        # a client with an issued key (a hotline console) has its own window
        key = await create_api_key(app.state.ctx.db, SystemClock(), "console 7")
        assert (await c.post("/v1/reports", json=STREETLIGHT_G11, headers={"X-API-Key": key})).status_code == 202


def test_a_rate_that_is_not_a_rate_is_refused_at_start_up():
    with pytest.raises(ValueError, match="120/minute"):
        Settings(rate_limit="lots")
    with pytest.raises(ValueError, match="lets nothing through"):
        Settings(rate_limit="0/minute")
