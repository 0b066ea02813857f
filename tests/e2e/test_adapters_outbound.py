"""Department adapters, outbound, end to end: intake, dispatcher and two departments processes
on PostgreSQL and the broker, and real HTTP servers on localhost standing in for two
departments' systems. Each delivery is checked with the reference Standard Webhooks library
(`standardwebhooks` from PyPI). The bus company's system answers, goes down (503) so its
deliveries retry and end dead, comes back, and a re-drive delivers each once, in order per
case; the power company's system never answers, and the bus company's deliveries do not wait
for it."""

import asyncio
import json
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from standardwebhooks import Webhook

from departments.adapters.signing import new_secret
from tests.support.adapters import district_with_adapters, secret_env, signed, update
from tests.support.cluster import Process, base_env, distributed, gridcall_args
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.servers import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

TIMEOUT = 4.0  # seconds a department's webhook may take


class Department:
    """A department's system: verifies every delivery with the reference library, then answers
    `status` (or never, with `hang`)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.status = 200
        self.hang = False
        self.received: list[dict[str, Any]] = []  # verified and answered 200, in arrival order
        self.refused = 0
        self.arrivals: dict[str, float] = {}  # case id -> when its first delivery arrived

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        event = self.webhook.verify(body, headers)  # raises on a bad signature: the test fails
        assert headers["content-type"] == "application/cloudevents+json"
        assert event["id"] == headers["webhook-id"]
        self.arrivals.setdefault(event["subject"], time.monotonic())
        if self.hang:
            await asyncio.sleep(3600)
        if self.status == 200:
            self.received.append(event)
        else:
            self.refused += 1
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def serve(app: Department) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, result=server.started or None))
    return server, task, f"http://127.0.0.1:{port}/hook"


async def assignments_topic(bootstrap: str, prefix: str) -> list[tuple[str, str]]:
    """(key, CloudEvent id) of every record on D-BUS's assignments topic."""
    consumer = AIOKafkaConsumer(
        f"{prefix}.dept.D-BUS.assignments", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[str, str]] = []
    try:
        while len(found) < 10:
            batch = await consumer.getmany(timeout_ms=5000)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value)
                    # structured mode, as the Kafka binding of CloudEvents and docs/asyncapi.yaml say
                    assert dict(r.headers) == {
                        "content-type": b"application/cloudevents+json",
                        "ce_type": event["type"].encode(),
                    }
                    found.append((r.key.decode(), event["id"]))
    finally:
        await consumer.stop()
    return found


def bus_stop(i: int) -> dict[str, Any]:
    """A bus-stop request (a bureau-tier category led by D-BUS) at its own place."""
    return {
        "category": "bus_stop",
        "description": f"Please add a stop near building {i}",
        "location": {"lat": 30.505 + i * 0.001, "lon": 114.305},
        "insist": True,
    }


POWER_OUTAGE = {
    "category": "power_outage",
    "description": "No power in building 9",
    "location": {"lat": 30.51, "lon": 114.31},
}


async def test_deliveries_verified_retried_dead_redriven_in_order_and_a_hanging_department_delays_no_other(
    distributed_env, tmp_path, tokens, topic_prefix
):
    bus_secret, power_secret = new_secret(), new_secret()
    bus, power = Department(bus_secret), Department(power_secret)
    power.hang = True
    bus_server, bus_task, bus_url = await serve(bus)
    power_server, power_task, power_url = await serve(power)
    district = district_with_adapters(
        tmp_path / "district.yaml",
        {
            "D-BUS": {"url": bus_url, "secret_env": secret_env("D-BUS"), "kafka": True},
            "D-POWER": {"url": power_url, "secret_env": secret_env("D-POWER")},
        },
    )
    env = {
        **distributed_env,
        "GRIDCALL_JURISDICTION_FILE": str(district),
        "GRIDCALL_ADAPTER_RETRY_SCHEDULE": "0s,1s,1s",
        "GRIDCALL_ADAPTER_TIMEOUT": str(TIMEOUT),
        secret_env("D-BUS"): bus_secret,
        secret_env("D-POWER"): power_secret,
    }
    staff, ops = tokens("D-BUS"), tokens()
    try:
        with distributed(env, tmp_path, services=("intake", "dispatcher", "departments")) as cluster:
            port = free_port()  # a second departments replica: order per case holds across both
            second = Process(
                "departments-2",
                port,
                gridcall_args("serve", "departments", "--port", str(port)),
                base_env(env),
                tmp_path / "departments-2.log",
            )
            cluster.processes["departments-2"] = second
            second.start()
            async with (
                httpx.AsyncClient(base_url=cluster["intake"].url, timeout=10) as intake,
                httpx.AsyncClient(base_url=cluster["departments"].url, timeout=10) as departments,
            ):
                # The power company never answers; the bus company's deliveries do not wait for it.
                await file_report(intake, POWER_OUTAGE)
                await eventually(lambda: asyncio.sleep(0, result=power.arrivals or None), timeout=30)
                filed = [await file_report(intake, bus_stop(i)) for i in range(3)]
                started = time.monotonic()
                first = await eventually(lambda: asyncio.sleep(0, result=len(bus.received) == 3 or None), timeout=30)
                assert first and time.monotonic() - started < TIMEOUT, "the bus company waited for the power company"
                for event in bus.received:
                    assert event["type"] == "gridcall.case.assigned"
                    assert event["data"]["unit_id"] == "D-BUS" and event["data"]["reporters"] == 1
                    assert event["data"]["location"] is not None and event["data"]["contact"] is None
                assert {e["subject"] for e in bus.received} == {c["case_id"] for c in filed}

                # The bus company's system goes down: new assignments and returns retry, then die.
                bus.status = 503
                more = [await file_report(intake, bus_stop(i)) for i in range(3, 5)]
                for case in [*filed, *more]:
                    ticket = await open_ticket(departments, "D-BUS", staff, case["case_id"])
                    r = await departments.post(
                        f"/v1/tickets/{ticket['ticket_id']}/return",
                        headers=bearer(staff),
                        json={"reason_code": "not_our_responsibility", "reason": "Roads decide stops"},
                    )
                    assert r.status_code == 200, r.text

                async def dead() -> list[dict[str, Any]] | None:
                    r = await departments.get(
                        "/v1/ops/deliveries", params={"state": "dead", "unit": "D-BUS"}, headers=bearer(ops)
                    )
                    assert r.status_code == 200, r.text
                    found = r.json()["deliveries"]
                    return found if len(found) == 3 + 2 else None

                # dead: the first three cases' unassigned, and the two new cases' assigned; their
                # unassigned wait behind them, never tried, so no case's messages overtake each other
                died = await eventually(dead, timeout=40)
                assert all(d["attempts"] == 3 and d["last_status"] == 503 for d in died)
                assert all(d["last_error"] == "HTTP 503" for d in died)
                assert bus.refused >= 3 * len(died)
                r = await departments.get(
                    "/v1/ops/deliveries", params={"state": "pending", "unit": "D-BUS"}, headers=bearer(ops)
                )
                held = r.json()["deliveries"]
                assert len(held) == 2 and all(d["attempts"] == 0 for d in held)
                assert {d["case_id"] for d in held} == {c["case_id"] for c in more}

                # It comes back: one delivery re-driven over the API, the rest with the CLI.
                bus.status = 200
                before = len(bus.received)
                r = await departments.post(f"/v1/ops/deliveries/{died[0]['id']}/redrive", headers=bearer(ops))
                assert r.status_code == 200 and r.json()["state"] == "pending", r.text
                again = await departments.post(f"/v1/ops/deliveries/{died[0]['id']}/redrive", headers=bearer(ops))
                assert again.status_code == 409, again.text  # no longer dead
                cli = await asyncio.to_thread(
                    subprocess.run,
                    gridcall_args("adapter", "redrive", "--unit", "D-BUS"),
                    env=base_env(env),
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert cli.returncode == 0, cli.stderr

                async def all_delivered() -> bool | None:
                    r = await departments.get("/v1/ops/adapters", headers=bearer(ops))
                    state = next(a for a in r.json() if a["unit_id"] == "D-BUS")
                    return (state["pending"], state["dead"]) == (0, 0) or None

                await eventually(all_delivered, timeout=30)  # a delivered one is never sent again
                after = bus.received[before:]
                ids = [e["id"] for e in after]
                assert sorted(ids) == sorted(d["msg_id"] for d in [*died, *held]), "each delivered exactly once"
                per_case: dict[str, list[str]] = defaultdict(list)
                for event in bus.received:
                    per_case[event["subject"]].append(event["type"])
                for case in more:
                    assert per_case[case["case_id"]] == ["gridcall.case.assigned", "gridcall.case.unassigned"]
                for case in filed:
                    assert per_case[case["case_id"]] == ["gridcall.case.assigned", "gridcall.case.unassigned"]

                # The Kafka face: the same CloudEvents on the unit's assignments topic, keyed by case.
                on_topic = await assignments_topic(distributed_env["GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"], topic_prefix)
                assert sorted(on_topic) == sorted((e["subject"], e["id"]) for e in bus.received)
    finally:
        for server in (bus_server, power_server):
            server.should_exit = True
        power_task.cancel()
        await asyncio.gather(bus_task, power_task, return_exceptions=True)


async def test_a_departments_system_answers_accepted_then_resolved_and_the_resident_is_told(
    distributed_env, tmp_path, tokens
):
    """The whole loop through an adapter: the assignment arrives verified by the reference
    library; the department's system answers `accepted` and `resolved`, signed with the same
    library, on the inbound endpoint; the case resolves and the resident is told."""
    secret = new_secret()
    bus = Department(secret)
    server, task, url = await serve(bus)
    district = district_with_adapters(
        tmp_path / "district.yaml", {"D-BUS": {"url": url, "secret_env": secret_env("D-BUS")}}
    )
    env = {**distributed_env, "GRIDCALL_JURISDICTION_FILE": str(district), secret_env("D-BUS"): secret}
    try:
        with distributed(env, tmp_path) as cluster:
            async with (
                httpx.AsyncClient(base_url=cluster["intake"].url, timeout=10) as intake,
                httpx.AsyncClient(base_url=cluster["departments"].url, timeout=10) as departments,
                httpx.AsyncClient(base_url=cluster["notifier"].url, timeout=10) as notifier,
            ):
                case = await file_report(intake, bus_stop(0))
                await eventually(lambda: asyncio.sleep(0, result=bus.received or None), timeout=30)
                [assigned] = bus.received
                ticket_id = assigned["data"]["ticket_id"]

                async def answer(kind: str, **fields: Any) -> dict[str, Any]:
                    body = update(ticket_id, kind, **fields)
                    at = datetime.now(UTC)
                    r = await departments.post(
                        "/v1/adapters/D-BUS/events", content=body, headers=signed(secret, body, at)
                    )
                    assert r.status_code == 200, r.text
                    return r.json()

                assert (await answer("accepted"))["status"] == "claimed"
                done = await answer(
                    "resolved", note="A stop is planned for March", evidence_urls=["https://bus.example.cn/plan.pdf"]
                )
                assert done["status"] == "resolved" and done["resolved_by"]["name"] == "王工"
                view = await case_in_status(intake, case, "resolved", timeout=30)
                assert view["timeline"][-1]["result"] == "A stop is planned for March"

                async def told() -> list[str] | None:
                    r = await notifier.get(
                        "/v1/notifications", params={"case_id": case["case_id"]}, headers=bearer(tokens())
                    )
                    kinds = [n["kind"] for n in r.json() if n["audience"] == "resident"]
                    return kinds if "case.resolved" in kinds else None

                await eventually(told, timeout=30)
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
