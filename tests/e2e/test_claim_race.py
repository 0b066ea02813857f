"""Fifty people claim one ticket at the same moment, over HTTP, through two departments
replicas (separate uvicorn processes) on one PostgreSQL database: exactly one wins, the others
are told who did, and the dispatcher records one claim, by the winner."""

import asyncio

import httpx
import pytest

from tests.support.cluster import Process, base_env, distributed, gridcall_args
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

CLAIMERS = 50
IN_G11 = {"lat": 30.505, "lon": 114.305}


async def test_fifty_concurrent_claims_have_one_winner(distributed_env, tmp_path, tokens):
    ops = bearer(tokens())
    port = free_port()
    args = gridcall_args("serve", "departments", "--port", str(port))
    replica = Process("departments-2", port, args, base_env(distributed_env), tmp_path / "departments-2.log")
    with distributed(distributed_env, tmp_path) as cluster:
        replica.start()
        try:
            async with (
                httpx.AsyncClient(base_url=cluster["intake"].url, timeout=30) as intake,
                httpx.AsyncClient(base_url=cluster["dispatcher"].url, timeout=30) as dispatcher,
                httpx.AsyncClient(base_url=cluster["departments"].url, timeout=30) as first,
                httpx.AsyncClient(base_url=replica.url, timeout=30) as second,
            ):
                people = []
                for i in range(CLAIMERS):
                    r = await first.post("/v1/staff", headers=ops, json={"unit_id": "U-G11", "name": f"Claimer {i:02}"})
                    assert r.status_code == 201, r.text
                    people.append(r.json())
                case = await file_report(
                    intake, {"category": "garbage", "description": "Rubbish by the gate", "location": IN_G11}
                )
                ticket = await open_ticket(first, "U-G11", people[0]["token"], case["case_id"], timeout=60)
                url = f"/v1/tickets/{ticket['ticket_id']}/claim"
                replicas = [first, second]
                answers = await asyncio.gather(
                    *(replicas[i % 2].post(url, headers=bearer(p["token"])) for i, p in enumerate(people))
                )

                won = [(p, r) for p, r in zip(people, answers, strict=True) if r.status_code == 200]
                lost = [r for r in answers if r.status_code != 200]
                assert len(won) == 1, [(r.status_code, r.text[:120]) for r in answers]
                [(winner, answer)] = won
                assert {r.status_code for r in lost} == {409}, [r.text for r in lost if r.status_code != 409]
                assert all(winner["name"] in r.json()["detail"] for r in lost), [r.json()["detail"] for r in lost]
                claimed_by = {"staff_id": winner["staff_id"], "name": winner["name"]}
                assert answer.json()["claimed_by"] == claimed_by
                r = await second.get(f"/v1/tickets/{ticket['ticket_id']}", headers=bearer(people[1]["token"]))
                assert r.json()["status"] == "claimed" and r.json()["claimed_by"] == claimed_by

                await case_in_status(intake, case, "claimed", timeout=60)
                r = await dispatcher.get(f"/v1/ops/cases/{case['case_id']}", headers=ops)
                assert r.status_code == 200, r.text
                claims = [h for h in r.json()["history"] if h["type"] == "case.claimed"]
                assert len(claims) == 1, claims
                assert claims[0]["by"] == claimed_by
        finally:
            replica.stop()
