"""Tiered routing end to end, every service its own process, SLA limits of seconds."""

from pathlib import Path

import pytest
import yaml

from services.runtime.settings import DATA_DIR
from tests.support.cluster import service_clients, timed
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

QUICK = {"response": "3s", "resolution": "1h"}
SLOW = {"response": "1h", "resolution": "1h"}
IN_G11 = {"lat": 30.505, "lon": 114.305}


def report(category: str, description: str) -> dict:
    """A report in G11; `insist` keeps each test's case its own, not a duplicate of another's."""
    return {"category": category, "description": description, "location": IN_G11, "insist": True}


def fast_policy(path: Path) -> Path:
    """The demo policy with limits of seconds for grid and community, an hour above them;
    'noise' keeps an hour everywhere so that tests can act on it at leisure."""
    raw = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    tiers = {"grid": QUICK, "community": QUICK, "street": SLOW, "bureau": SLOW}
    raw["sla"] = {p: tiers for p in ("normal", "urgent", "emergency")}
    for cat in raw["categories"]:
        cat.pop("sla", None)
        if cat["code"] == "noise":
            cat["sla"] = {"normal": {t: SLOW for t in tiers}}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def cluster(pg_url, broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routing")
    with timed(pg_url, broker.bootstrap, tmp, fast_policy(tmp / "policy.yaml"), "r") as c:
        yield c


@pytest.fixture
async def clients(cluster):
    async with service_clients(cluster, "intake", "departments", "dispatcher") as found:
        yield found


async def act(departments, ticket, token, action, body=None):
    r = await departments.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(token), json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_missed_response_limits_escalate_grid_to_community_to_street(clients, tokens):
    intake, departments, dispatcher = clients
    case = await file_report(intake, report("garbage", "Nobody came"))

    async def at_street():
        r = await intake.get(f"/v1/cases/{case['case_id']}", headers={"X-Tracking-Token": case["tracking_token"]})
        view = r.json()
        return view if view["tier"] == "street" else None

    view = await eventually(at_street, timeout=60)
    assert view["unit_id"] == "U-S1" and view["status"] == "assigned"
    escalations = [(e["from_tier"], e["to_tier"]) for e in view["timeline"] if e["type"] == "escalated"]
    assert escalations == [("grid", "community"), ("community", "street")]

    history = (await dispatcher.get(f"/v1/ops/cases/{case['case_id']}", headers=bearer(tokens()))).json()
    assert [a["unit_id"] for a in history["assignments"]] == ["U-G11", "U-C1", "U-S1"]
    assert [h["type"] for h in history["history"]].count("case.sla_breached") == 2

    async def grid_ticket_withdrawn():
        r = await departments.get(
            "/v1/units/U-G11/tickets", params={"status": "withdrawn"}, headers=bearer(tokens("U-G11"))
        )
        assert r.status_code == 200, r.text
        return [t for t in r.json()["tickets"] if t["case_id"] == case["case_id"]]

    await eventually(grid_ticket_withdrawn)


async def test_a_returned_case_is_dispatched_again(clients, tokens):
    intake, departments, _ = clients
    case = await file_report(intake, report("noise", "Bar music at 2am"))
    g11 = tokens("U-G11")
    ticket = await open_ticket(departments, "U-G11", g11, case["case_id"])
    await act(
        departments,
        ticket,
        g11,
        "return",
        {"reason_code": "not_our_jurisdiction", "reason": "the bar is in the next grid", "suggested_unit_id": "U-G12"},
    )
    g12 = tokens("U-G12")
    again = await open_ticket(departments, "U-G12", g12, case["case_id"])
    await act(departments, again, g12, "return", {"reason_code": "beyond_our_powers", "reason": "needs the office"})
    await open_ticket(departments, "U-C1", tokens("U-C1"), case["case_id"])

    async def with_the_community():
        view = await case_in_status(intake, case, "assigned")
        return view if view["unit_id"] == "U-C1" else None

    view = await eventually(with_the_community)
    assert view["tier"] == "community"
    assert [e["type"] for e in view["timeline"]].count("redispatched") == 2


async def test_a_whistle_summons_two_departments_and_the_case_resolves_when_both_reported(clients, tokens):
    intake, departments, _ = clients
    case = await file_report(
        intake,
        report("road_damage", "Sinkhole by the bus stop"),
    )
    street = tokens("U-S1")
    ticket = await open_ticket(departments, "U-S1", street, case["case_id"])
    await act(departments, ticket, street, "claim")
    await act(
        departments, ticket, street, "whistle", {"lead": "D-URBAN", "co": ["D-WATER"], "reason": "pipe under road"}
    )

    urban, water = tokens("D-URBAN"), tokens("D-WATER")
    lead = await open_ticket(departments, "D-URBAN", urban, case["case_id"])
    co = await open_ticket(departments, "D-WATER", water, case["case_id"])
    assert (lead["role"], co["role"]) == ("lead", "co")
    await act(departments, lead, urban, "claim")
    await act(departments, co, water, "claim")
    await act(departments, lead, urban, "resolve", {"note": "Road resurfaced"})
    await case_in_status(intake, case, "claimed")  # still waiting for the water utility

    await act(departments, co, water, "resolve", {"note": "Pipe repaired"})
    view = await case_in_status(intake, case, "resolved")
    assert view["timeline"][-1]["result"] == "Road resurfaced"
    assert any(e["type"] == "departments_summoned" for e in view["timeline"])


async def test_an_unsatisfied_resident_reopens_the_case_with_the_unit_that_resolved_it(clients, tokens):
    intake, departments, dispatcher = clients
    case = await file_report(intake, report("noise", "Dog barking all night"))
    g11 = tokens("U-G11")
    ticket = await open_ticket(departments, "U-G11", g11, case["case_id"])
    await act(departments, ticket, g11, "claim")
    await act(departments, ticket, g11, "resolve", {"note": "Spoke to the owner"})
    await case_in_status(intake, case, "resolved")

    track = {"X-Tracking-Token": case["tracking_token"]}
    r = await intake.post(
        f"/v1/cases/{case['case_id']}/satisfaction",
        headers=track,
        json={"answer": "unsatisfied", "comment": "still barking"},
    )
    assert r.status_code == 202, r.text
    again = await intake.post(f"/v1/cases/{case['case_id']}/satisfaction", headers=track, json={"answer": "satisfied"})
    assert again.status_code == 409  # one answer per resolution

    async def reopened_ticket():
        r = await departments.get("/v1/units/U-G11/tickets", headers=bearer(g11))
        assert r.status_code == 200, r.text
        return next((t for t in r.json()["tickets"] if t["case_id"] == case["case_id"] and t["status"] == "open"), None)

    second = await eventually(reopened_ticket)
    assert second["ticket_id"] != ticket["ticket_id"]
    view = await case_in_status(intake, case, "assigned")
    assert view["unit_id"] == "U-G11" and any(e["type"] == "reopened" for e in view["timeline"])

    await act(departments, second, g11, "claim")
    await act(departments, second, g11, "resolve", {"note": "Owner moved the dog inside"})
    await case_in_status(intake, case, "resolved")
    r = await intake.post(f"/v1/cases/{case['case_id']}/satisfaction", headers=track, json={"answer": "satisfied"})
    assert r.status_code == 202
    await case_in_status(intake, case, "closed")

    # both visits count towards the unit's satisfaction rate
    query = {"unit": "U-G11", "category": "noise"}
    r = await dispatcher.get("/v1/ops/satisfaction", params=query, headers=bearer(tokens()))
    assert r.status_code == 200, r.text
    assert (r.json()["satisfied"], r.json()["unsatisfied"], r.json()["rate"]) == (1, 1, 0.5)
