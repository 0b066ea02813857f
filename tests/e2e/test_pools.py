"""A volunteer pool end to end (群众点单、党员接单; 微心愿), every service its own process:
members of the community's pool see the ticket, one claims and resolves it, the resident is
told; an order nobody claims in time goes up to the community office."""

import httpx
import pytest

from tests.support.cluster import service_clients, timed
from tests.support.journey import bearer, case_in_status, file_report, pool_ticket
from tests.support.policies import demo_policy_with
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

IN_G11 = {"lat": 30.505, "lon": 114.305}  # community C1: pool P-C1, community office U-C1
# Orders get a response limit of seconds; micro-wishes keep the demo policy's hours.
QUICK_ORDERS = {"order": {"grid": {"response": "4s", "resolution": "1h"}}}


@pytest.fixture(scope="module")
def cluster(pg_url, broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pools")
    with timed(pg_url, broker.bootstrap, tmp, demo_policy_with(tmp / "policy.yaml", QUICK_ORDERS), "p") as c:
        yield c


@pytest.fixture
async def clients(cluster):
    async with service_clients(cluster, "intake", "departments", "notifier") as found:
        yield found


async def member(departments: httpx.AsyncClient, ops: str, pool_id: str, name: str) -> dict:
    r = await departments.post(
        "/v1/staff", headers=bearer(ops), json={"unit_id": pool_id, "name": name, "role": "handler"}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_micro_wish_is_seen_by_the_pool_claimed_by_one_member_and_resolved(clients, tokens):
    intake, departments, notifier = clients
    ops = tokens()
    li = await member(departments, ops, "P-C1", "Volunteer Li")
    wang = await member(departments, ops, "P-C1", "Volunteer Wang")

    case = await file_report(
        intake,
        {
            "category": "micro_wish",
            "description": "Grandma Zhang needs rice and vegetables bought",
            "location": IN_G11,
            "attributes": {"need": "shopping"},
            "insist": True,
        },
    )
    seen_by_li = await pool_ticket(departments, "P-C1", li["token"], case["case_id"])
    seen_by_wang = await pool_ticket(departments, "P-C1", wang["token"], case["case_id"])
    assert seen_by_li["ticket_id"] == seen_by_wang["ticket_id"]
    assert (seen_by_li["unit_id"], seen_by_li["tier"], seen_by_li["status"]) == ("P-C1", "grid", "open")
    assert seen_by_li["details"]["attributes"] == {"need": "shopping"}
    assert seen_by_li["location"] == IN_G11  # where she reported it, for the console's drawing
    ticket_id = seen_by_li["ticket_id"]

    r = await departments.post(f"/v1/tickets/{ticket_id}/claim", headers=bearer(li["token"]))
    assert r.status_code == 200, r.text
    assert r.json()["claimed_by"]["staff_id"] == li["staff_id"]
    late = await departments.post(f"/v1/tickets/{ticket_id}/claim", headers=bearer(wang["token"]))
    assert late.status_code == 409, late.text
    assert "Volunteer Li" in late.json()["detail"]

    note = "Bought rice, eggs and greens; delivered at 10:30"
    r = await departments.post(f"/v1/tickets/{ticket_id}/resolve", headers=bearer(li["token"]), json={"note": note})
    assert r.status_code == 200, r.text

    view = await case_in_status(intake, case, "resolved")
    assert (view["unit_id"], view["tier"]) == ("P-C1", "grid")
    assert view["timeline"][-1]["result"] == note

    async def told() -> list[dict] | None:
        r = await notifier.get("/v1/notifications", params={"case_id": case["case_id"]}, headers=bearer(ops))
        assert r.status_code == 200, r.text
        resident = [n for n in r.json() if n["audience"] == "resident"]
        return (
            resident
            if [n["kind"] for n in resident] == ["case.assigned", "case.claimed", "case.resolved", "case.visit"]
            else None
        )

    resident = await eventually(told)
    assert note in resident[-2]["message"]  # the resolution; the satisfaction visit follows

    r = await departments.get(f"/v1/pools/P-C1/members/{li['staff_id']}/record", headers=bearer(li["token"]))
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["completed"] == 1
    assert [(t["ticket_id"], t["status"], t["note"]) for t in record["tickets"]] == [(ticket_id, "resolved", note)]
    r = await departments.get(f"/v1/pools/P-C1/members/{wang['staff_id']}/record", headers=bearer(wang["token"]))
    assert r.status_code == 200, r.text
    assert r.json()["completed"] == 0


async def test_an_order_nobody_claims_goes_up_to_the_community_office(clients, tokens):
    intake, departments, _ = clients
    ops = tokens()
    zhao = await member(departments, ops, "P-C1", "Volunteer Zhao")
    case = await file_report(
        intake,
        {
            "category": "order",
            "description": "A haircut at home for my father, who cannot walk",
            "location": IN_G11,
            "attributes": {"service": "haircut"},
            "insist": True,
        },
    )
    pooled = await pool_ticket(departments, "P-C1", zhao["token"], case["case_id"])
    assert pooled["status"] == "open"

    office = tokens("U-C1")

    async def with_the_office() -> dict | None:
        r = await departments.get("/v1/units/U-C1/tickets", headers=bearer(office))
        assert r.status_code == 200, r.text
        return next((t for t in r.json()["tickets"] if t["case_id"] == case["case_id"]), None)

    escalated = await eventually(with_the_office, timeout=30)
    assert (escalated["tier"], escalated["status"]) == ("community", "open")
    assert escalated["arrived_because"].startswith("escalated from P-C1 (grid tier): its response limit passed")

    async def withdrawn() -> dict | None:
        r = await departments.get(f"/v1/tickets/{pooled['ticket_id']}", headers=bearer(zhao["token"]))
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] == "withdrawn" else None

    await eventually(withdrawn)
    r = await departments.get("/v1/pools/P-C1/tickets", headers=bearer(zhao["token"]))
    assert case["case_id"] not in [t["case_id"] for t in r.json()["tickets"]]
    late_claim = await departments.post(f"/v1/tickets/{pooled['ticket_id']}/claim", headers=bearer(zhao["token"]))
    assert late_claim.status_code == 409, late_claim.text

    async def resident_sees_the_office() -> dict | None:
        view = await case_in_status(intake, case, "assigned")
        return view if view["unit_id"] == "U-C1" else None

    view = await eventually(resident_sees_the_office)
    assert view["tier"] == "community"
    assert [(e["from_tier"], e["to_tier"]) for e in view["timeline"] if e["type"] == "escalated"] == [
        ("grid", "community")
    ]
