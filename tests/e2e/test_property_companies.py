"""Property companies as handling units end to end (红色物业), every service its own process:
a compound's corridor garbage goes to the company managing it, and when the company misses its
response limit the community office supervising it takes the case over."""

import httpx
import pytest

from tests.support.cluster import service_clients, timed
from tests.support.journey import bearer, file_report, open_ticket
from tests.support.policies import demo_policy_with

pytestmark = pytest.mark.e2e

IN_OSMANTHUS = {"lat": 30.5025, "lon": 114.3125}  # compound CP-OSMANTHUS in grid G21 (C2), managed by PM-GREEN
IN_G21_OUTSIDE_COMPOUNDS = {"lat": 30.507, "lon": 114.317}
QUICK_GARBAGE = {"corridor_garbage": {"grid": {"response": "4s", "resolution": "1h"}}}


@pytest.fixture(scope="module")
def cluster(pg_url, broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("property")
    with timed(pg_url, broker.bootstrap, tmp, demo_policy_with(tmp / "policy.yaml", QUICK_GARBAGE), "m") as c:
        yield c


@pytest.fixture
async def clients(cluster):
    async with service_clients(cluster, "intake", "departments", "dispatcher") as found:
        yield found


def garbage(location: dict) -> dict:
    return {
        "category": "corridor_garbage",
        "description": "Bags of rubbish on the third-floor landing of building 5",
        "location": location,
        "insist": True,
    }


async def ops_case(dispatcher: httpx.AsyncClient, case_id: str, ops: str) -> dict:
    r = await dispatcher.get(f"/v1/ops/cases/{case_id}", headers=bearer(ops))
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_company_misses_its_response_limit_and_the_community_office_takes_over(clients, tokens):
    intake, departments, dispatcher = clients
    ops = tokens()
    case = await file_report(intake, garbage(IN_OSMANTHUS))

    with_company = await open_ticket(departments, "PM-GREEN", tokens("PM-GREEN"), case["case_id"])
    assert (with_company["tier"], with_company["grid_id"], with_company["status"]) == ("grid", "G21", "open")
    first = await ops_case(dispatcher, case["case_id"], ops)
    assert (first["grid_id"], first["community_id"]) == ("G21", "C2")
    assert [(a["unit_id"], a["tier"]) for a in first["assignments"]][:1] == [("PM-GREEN", "grid")]

    with_office = await open_ticket(departments, "U-C2", tokens("U-C2"), case["case_id"])
    assert (with_office["tier"], with_office["status"]) == ("community", "open")
    assert with_office["arrived_because"].startswith("escalated from PM-GREEN (grid tier): its response limit passed")

    history = await ops_case(dispatcher, case["case_id"], ops)
    assert (history["unit_id"], history["tier"]) == ("U-C2", "community")
    assert [(a["unit_id"], a["tier"], a["status"]) for a in history["assignments"]] == [
        ("PM-GREEN", "grid", "ended"),
        ("U-C2", "community", "open"),
    ]
    assert history["assignments"][0]["response_breached"]
    breaches = [h for h in history["history"] if h["type"] == "case.sla_breached"]
    escalations = [h for h in history["history"] if h["type"] == "case.escalated"]
    assert [(b["unit_id"], b["clock"]) for b in breaches] == [("PM-GREEN", "response")]
    assert [(e["from_unit_id"], e["to_unit_id"], e["to_tier"]) for e in escalations] == [
        ("PM-GREEN", "U-C2", "community")
    ]


async def test_outside_every_compound_the_grid_worker_handles_it(clients, tokens):
    intake, departments, dispatcher = clients
    case = await file_report(intake, garbage(IN_G21_OUTSIDE_COMPOUNDS))

    ticket = await open_ticket(departments, "U-G21", tokens("U-G21"), case["case_id"])
    assert (ticket["tier"], ticket["grid_id"]) == ("grid", "G21")
    history = await ops_case(dispatcher, case["case_id"], tokens())
    assert [(a["unit_id"], a["tier"]) for a in history["assignments"]][:1] == [("U-G21", "grid")]
    r = await departments.get("/v1/units/PM-GREEN/tickets", headers=bearer(tokens("PM-GREEN")))
    assert case["case_id"] not in [t["case_id"] for t in r.json()["tickets"]]
