"""The whole loop with every service as a separate OS process."""

import json

import httpx
import pytest

from services.district.clock import SystemClock
from services.web.auth import Authenticator
from tests.support.cluster import distributed, embedded, embedded_env
from tests.support.journey import TEST_SECRET, bearer, case_in_status, file_report, metric, open_ticket
from tests.support.staff import person, signed
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

# A point inside grid G32 (community C3, street S2): its grid unit must get the ticket.
IN_G32 = {"lat": 30.5151, "lon": 114.3247}
CONTACT = {"name": "Zhao Min", "phone": "13800000000"}


async def resident_notifications(client: httpx.AsyncClient, case_id: str, ops: str) -> list[str]:
    r = await client.get("/v1/notifications", params={"case_id": case_id}, headers=bearer(ops))
    assert r.status_code == 200, r.text
    return [n["kind"] for n in r.json() if n["audience"] == "resident"]


async def test_distributed_loop_on_postgres_and_the_broker(distributed_env, tmp_path, tokens):
    with distributed(distributed_env, tmp_path) as cluster:
        async with (
            httpx.AsyncClient(base_url=cluster["intake"].url, timeout=10) as intake,
            httpx.AsyncClient(base_url=cluster["departments"].url, timeout=10) as departments,
            httpx.AsyncClient(base_url=cluster["notifier"].url, timeout=10) as notifier,
            httpx.AsyncClient(base_url=cluster["dispatcher"].url, timeout=10) as dispatcher,
        ):
            case = await file_report(
                intake,
                {"category": "noise", "description": "Drilling after midnight", "location": IN_G32, "contact": CONTACT},
            )
            view = await case_in_status(intake, case, "assigned", timeout=60)
            assert (view["tier"], view["unit_id"]) == ("grid", "U-G32")

            staff = tokens("U-G32")
            ticket = await open_ticket(departments, "U-G32", staff, case["case_id"])
            assert ticket["description"] == "Drilling after midnight"
            assert (
                await departments.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
            ).status_code == 200
            assert (
                await departments.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
            ).status_code == 409
            r = await departments.post(
                f"/v1/tickets/{ticket['ticket_id']}/resolve",
                headers=bearer(staff),
                json={"note": "Spoke to the neighbour"},
            )
            assert r.status_code == 200, r.text

            view = await case_in_status(intake, case, "resolved", timeout=60)
            assert [e["type"] for e in view["timeline"]] == ["received", "assigned", "claimed", "resolved"]

            ops = tokens()

            async def told() -> list[str] | None:  # the resident left a phone: they follow the case from the start
                kinds = await resident_notifications(notifier, case["case_id"], ops)
                every_step = ["case.received", "case.assigned", "case.claimed", "case.resolved", "case.visit"]
                return kinds if kinds == every_step else None

            await eventually(told, timeout=30)

            history = (await dispatcher.get(f"/v1/ops/cases/{case['case_id']}", headers=bearer(ops))).json()
            assert history["status"] == "resolved"
            assert [a["unit_id"] for a in history["assignments"]] == ["U-G32"]

            # each process's /metrics saw its part of the journey
            reported = "gridcall.case.reported"
            assert await metric(intake, "gridcall_http_requests_total", route="/v1/reports", status="202") == 1
            assert await metric(intake, "gridcall_events_produced_total", service="intake", type=reported) == 1
            assert await metric(dispatcher, "gridcall_events_consumed_total", type=reported) == 1
            assert await metric(dispatcher, "gridcall_timers", state="pending") >= 0
            lag = (await dispatcher.get("/metrics")).text
            assert 'gridcall_consumer_lag{consumer="' in lag  # Kafka tells; caught up by now
            assert await metric(dispatcher, "gridcall_consumer_lag") == 0
            route = "/v1/tickets/{ticket_id}/claim"
            assert await metric(departments, "gridcall_http_requests_total", route=route, status="409") == 1
            assert await metric(departments, "gridcall_events_consumed_total", type="gridcall.case.contact_given") == 1

            async def delivered() -> bool:
                return await metric(notifier, "gridcall_deliveries_total", channel="log", outcome="delivered") >= 2

            await eventually(delivered, timeout=30)
            # the notifier keeps the case's category, grid and priority to word later messages
            assert await metric(notifier, "gridcall_events_consumed_total", type=reported) == 1

        # every process logged JSON lines (not a terminal), and none holds the resident's contact
        for name, process in cluster.processes.items():
            lines = [line for line in process.log.read_text().splitlines() if line.startswith("{")]
            assert lines, name
            for line in lines:
                assert {"time", "level", "logger", "message", "service"} <= json.loads(line).keys()
            assert not any(secret in process.log.read_text() for secret in CONTACT.values()), name


async def test_embedded_loop_survives_kill_9(tmp_path):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            case = await file_report(
                client, {"category": "streetlight", "description": "Dark for a week", "location": IN_G32}
            )
            gridcall.kill()  # right after the 202: the report must not be lost
            gridcall.start()
            view = await case_in_status(client, case, "assigned")
            assert (view["tier"], view["unit_id"]) == ("community", "U-C3")

            ops = signed(Authenticator(TEST_SECRET, SystemClock()))
            staff = await person(client, ops, "U-C3", "Community clerk")
            ticket = await open_ticket(client, "U-C3", staff, case["case_id"])
            gridcall.kill()  # between filing and claiming
            gridcall.start()
            assert (
                await client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
            ).status_code == 200
            r = await client.post(
                f"/v1/tickets/{ticket['ticket_id']}/resolve", headers=bearer(staff), json={"note": "Bulb replaced"}
            )
            assert r.status_code == 200
            view = await case_in_status(client, case, "resolved")
            assert view["timeline"][-1]["result"] == "Bulb replaced"

            async def told() -> list[str] | None:
                kinds = await resident_notifications(client, case["case_id"], ops)
                return kinds if kinds == ["case.assigned", "case.claimed", "case.resolved", "case.visit"] else None

            await eventually(told)
