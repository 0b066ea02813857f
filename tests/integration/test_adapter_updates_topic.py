"""A department's system on its updates topic, end to end on PostgreSQL and the broker: what
it produces (with its own Kafka client) resolves the case; the same update produced twice
resolves it once; an update that cannot be applied is parked with its error."""

import json

import pytest
from aiokafka import AIOKafkaProducer

from departments.adapters.signing import new_secret
from tests.support.adapters import NOWHERE, district_with_adapters, update
from tests.support.apps import running
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

BUS_STOP = {
    "category": "bus_stop",
    "description": "the shelter's glass is broken",
    "location": {"lat": 30.505, "lon": 114.305},
}


@pytest.fixture
async def stack(pg_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_ADAPTER_D_BUS", new_secret())
    district = district_with_adapters(
        tmp_path / "district.yaml", {"D-BUS": {"url": NOWHERE, "secret_env": "TEST_ADAPTER_D_BUS", "kafka": True}}
    )
    async with running(pg_settings, handlers=True, jurisdiction_file=district) as app:
        yield app.client, app.tokens, app.settings


async def test_updates_produced_on_the_topic_resolve_the_case_once_and_a_bad_one_is_parked(stack, broker):
    client, token, settings = stack
    case = await file_report(client, BUS_STOP)
    ticket = await open_ticket(client, "D-BUS", token("D-BUS"), case["case_id"])
    tid, topic = ticket["ticket_id"], f"{settings.topic_prefix}.dept.D-BUS.updates"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for body, ce_id in [
            (update(tid, "accepted"), "bus-1"),
            (update(tid, "resolved", note="玻璃已更换"), "bus-2"),
            (update(tid, "resolved", note="玻璃已更换"), "bus-2"),  # their producer retried
            (update(tid, "rejected", note="not ours"), "bus-3"),  # no reason_code
            (b"{not json", "bus-4"),
        ]:
            await producer.send_and_wait(topic, body, key=tid.encode(), headers=[("ce_id", ce_id.encode())])
    finally:
        await producer.stop()

    view = await case_in_status(client, case, "resolved")
    assert view["status"] == "resolved"
    ops = bearer(token())

    async def parked():
        r = await client.get("/v1/ops/deadletters", headers=ops)
        letters = [d for d in r.json()["deadletters"] if d["source_topic"] == topic]
        return letters if len(letters) == 2 else None

    letters = await eventually(parked, timeout=30)
    assert {d["event_id"]: "reason_code" in d["error"] or "json" in d["error"].lower() for d in letters} == {
        "bus-3": True,
        "bus-4": True,
    }
    history = (await client.get(f"/v1/ops/cases/{case['case_id']}", headers=ops)).json()["history"]
    kinds = [h["type"] for h in history]
    assert kinds.count("case.claimed") == 1 and kinds.count("case.handler_reported") == 1, json.dumps(kinds)
    done = (await client.get(f"/v1/tickets/{tid}", headers=bearer(token("D-BUS")))).json()
    assert done["status"] == "resolved" and done["resolved_by"] == {"staff_id": "adapter:D-BUS", "name": "王工"}
