"""A department's system answering on POST /v1/adapters/{unit}/events and on its updates
topic, in-process on the embedded stack (SQLite, the local bus) with a frozen clock. The
requests are signed with the reference Standard Webhooks library."""

import json
from datetime import timedelta

import pytest

from departments.adapters.signing import new_secret
from services.messaging.bus import Message
from tests.support.adapters import NOWHERE, district_with_adapters, signed, update
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

BUS_STOP = {
    "category": "bus_stop",
    "description": "the shelter's glass is broken",
    "location": {"lat": 30.505, "lon": 114.305},
}
GARBAGE = {"category": "garbage", "description": "bags in the stairwell", "location": {"lat": 30.505, "lon": 114.305}}
SECRETS = {"D-BUS": new_secret(), "D-POWER": new_secret()}


@pytest.fixture
async def stack(embedded_settings, tmp_path, monkeypatch):
    for unit, secret in SECRETS.items():
        monkeypatch.setenv(f"TEST_ADAPTER_{unit.replace('-', '_')}", secret)
    district = district_with_adapters(
        tmp_path / "district.yaml",
        {
            "D-BUS": {"url": NOWHERE, "secret_env": "TEST_ADAPTER_D_BUS", "kafka": True},
            "D-POWER": {"url": NOWHERE, "secret_env": "TEST_ADAPTER_D_POWER"},
        },
    )
    async with running(embedded_settings, clock=frozen_clock(), handlers=True, jurisdiction_file=district) as app:
        yield app.client, app.tokens, app.clock, app.app


async def bus_ticket(client, token, body=BUS_STOP, unit="D-BUS"):
    case = await file_report(client, body)
    return case, await open_ticket(client, unit, token(unit), case["case_id"])


async def send(client, clock, body: bytes, *, unit="D-BUS", secret=None, msg_id=None, at=None, drop=None):
    headers = signed(secret or SECRETS[unit], body, at or clock.now(), msg_id)
    if drop:
        del headers[drop]
    return await client.post(f"/v1/adapters/{unit}/events", content=body, headers=headers)


async def ticket_now(client, token, ticket, unit="D-BUS"):
    r = await client.get(f"/v1/tickets/{ticket['ticket_id']}", headers=bearer(token(unit)))
    assert r.status_code == 200, r.text
    return r.json()


async def history(client, token, case):
    r = await client.get(f"/v1/ops/cases/{case['case_id']}", headers=bearer(token()))
    assert r.status_code == 200, r.text
    return r.json()["history"]


async def test_an_unsigned_or_badly_signed_update_is_refused_and_changes_nothing(stack):
    client, token, clock, _ = stack
    _, ticket = await bus_ticket(client, token)
    body = update(ticket["ticket_id"], "accepted")
    refusals = {
        "no v1 signature matches": await send(client, clock, body, secret=new_secret()),
        "the body changed": await client.post(
            "/v1/adapters/D-BUS/events",
            content=body.replace(b"accepted", b"progress"),
            headers=signed(SECRETS["D-BUS"], body, clock.now()),
        ),
        "stale": await send(client, clock, body, at=clock.now() - timedelta(minutes=6)),
        "future": await send(client, clock, body, at=clock.now() + timedelta(minutes=6)),
        "no webhook-signature": await send(client, clock, body, drop="webhook-signature"),
        "no webhook-id": await send(client, clock, body, drop="webhook-id"),
        "no webhook-timestamp": await send(client, clock, body, drop="webhook-timestamp"),
        "another unit's secret": await send(client, clock, body, secret=SECRETS["D-POWER"]),
        "a unit without an adapter": await send(client, clock, body, unit="D-WATER", secret=SECRETS["D-BUS"]),
    }
    for what, r in refusals.items():
        assert r.status_code == 401, (what, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail, what
    assert "wrong secret, or the body changed" in refusals["the body changed"].json()["detail"]
    assert "5 minutes" in refusals["stale"].json()["detail"] and "5 minutes" in refusals["future"].json()["detail"]
    assert "missing" in refusals["no webhook-id"].json()["detail"]
    assert "no webhook adapter" in refusals["a unit without an adapter"].json()["detail"]
    assert (await ticket_now(client, token, ticket))["status"] == "open"
    # a webhook-only unit signs for itself, and only for its own tickets
    r = await send(client, clock, body, unit="D-POWER")
    assert r.status_code == 404


async def test_accepted_twice_with_one_webhook_id_claims_once_then_resolved_with_evidence_closes_the_case(stack):
    client, token, clock, _ = stack
    case, ticket = await bus_ticket(client, token)
    accepted = update(ticket["ticket_id"], "accepted")
    first = await send(client, clock, accepted, msg_id="msg_accept_1")
    assert first.status_code == 200, first.text
    claimed = first.json()
    assert claimed["status"] == "claimed" and claimed["claimed_by"] == {"staff_id": "adapter:D-BUS", "name": "王工"}
    again = await send(client, clock, accepted, msg_id="msg_accept_1")  # the sender retries: same id
    assert again.status_code == 200 and again.json()["status"] == "claimed"
    assert (await send(client, clock, accepted)).status_code == 409  # a new id: claiming twice is a conflict

    progress = update(
        ticket["ticket_id"], "progress", note="维修人员已出发", evidence_urls=["https://bus.example.cn/p/1.jpg"]
    )
    r = await send(client, clock, progress)
    assert r.status_code == 200 and [n["text"] for n in r.json()["notes"]] == ["维修人员已出发"]
    resolved = update(
        ticket["ticket_id"],
        "resolved",
        note="玻璃已更换",
        evidence_urls=["https://bus.example.cn/p/2.jpg", "https://bus.example.cn/p/3.jpg"],
    )
    for _ in range(2):
        r = await send(client, clock, resolved, msg_id="msg_resolve_1")
        assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "resolved" and done["note"] == "玻璃已更换"
    assert done["resolved_by"] == {"staff_id": "adapter:D-BUS", "name": "王工"}
    assert [e["url"] for e in done["evidence"]] == [f"https://bus.example.cn/p/{i}.jpg" for i in (1, 2, 3)]

    view = await case_in_status(client, case, "resolved")
    assert "维修人员已出发" in json.dumps(view, ensure_ascii=False)  # the public note reached the resident

    async def claimed_once():
        entries = await history(client, token, case)
        return entries if any(h["type"] == "case.handler_reported" for h in entries) else None

    entries = await eventually(claimed_once)
    claims = [h for h in entries if h["type"] == "case.claimed"]
    assert len(claims) == 1 and claims[0]["by"]["name"] == "王工"


async def test_rejected_returns_the_ticket_with_its_reason(stack):
    client, token, clock, _ = stack
    _, ticket = await bus_ticket(client, token)
    body = update(ticket["ticket_id"], "rejected", reason_code="not_our_responsibility", note="站台属于城管")
    r = await send(client, clock, body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "returned" and "站台属于城管" in r.json()["handover_reason"]


async def test_another_units_ticket_is_not_found_without_a_hint_and_a_withdrawn_one_is_a_conflict(stack):
    client, token, clock, _ = stack
    _, garbage = await bus_ticket(client, token, GARBAGE, "U-G11")
    elsewhere = await send(client, clock, update(garbage["ticket_id"], "accepted"))
    unknown = await send(client, clock, update("no-such-ticket", "accepted"))
    assert elsewhere.status_code == unknown.status_code == 404
    assert elsewhere.json()["detail"].replace(garbage["ticket_id"], "X") == unknown.json()["detail"].replace(
        "no-such-ticket", "X"
    )
    assert "U-G11" not in elsewhere.text
    assert (await ticket_now(client, token, garbage, "U-G11"))["status"] == "open"

    case, ticket = await bus_ticket(client, token)
    r = await client.post(
        f"/v1/cases/{case['case_id']}/cancel", headers={"X-Tracking-Token": case["tracking_token"]}, json={}
    )
    assert r.status_code == 202, r.text

    async def withdrawn():
        return (await ticket_now(client, token, ticket))["status"] == "withdrawn"

    await eventually(withdrawn)
    r = await send(client, clock, update(ticket["ticket_id"], "resolved", note="done"))
    assert r.status_code == 409 and "withdrawn" in r.json()["detail"]


async def test_a_bad_body_is_a_422_naming_the_field(stack):
    client, token, clock, _ = stack
    _, ticket = await bus_ticket(client, token)
    tid = ticket["ticket_id"]
    cases = {
        b"not json": ["body"],
        update(tid, "resolved"): ["body", "note"],
        update(tid, "progress", note="   "): ["body", "note"],
        update(tid, "rejected", note="not ours"): ["body", "reason_code"],
        update(tid, "rejected", reason_code="duplicate"): ["body", "note"],
        update(tid, "closed"): ["body", "type"],
        update(tid, "accepted", colour="red"): ["body", "colour"],
        update(tid, "accepted", evidence_urls=["ftp://x/y"]): ["body", "evidence_urls", 0],
        json.dumps({"ticket_id": tid, "type": "accepted"}).encode(): ["body", "handler"],
    }
    for body, loc in cases.items():
        r = await send(client, clock, body)
        assert r.status_code == 422, (body, r.text)
        assert [e["loc"] for e in r.json()["detail"]][0] == loc, (body, r.json())
    assert (await ticket_now(client, token, ticket))["status"] == "open"


async def test_the_updates_topic_on_the_local_bus_applies_each_ce_id_once_and_parks_what_it_cannot_apply(stack):
    client, token, clock, app = stack
    case, ticket = await bus_ticket(client, token)
    tid, topic = ticket["ticket_id"], "gridcall.dept.D-BUS.updates"
    records = [
        Message(topic, tid, update(tid, "accepted"), {"ce_id": "k-accept"}),
        Message(topic, tid, update(tid, "resolved", note="换好了"), {"ce_id": "k-resolve"}),
        Message(topic, tid, update(tid, "resolved", note="换好了"), {"ce_id": "k-resolve"}),  # produced twice
        Message(topic, tid, update(tid, "resolved"), {"ce_id": "k-no-note"}),
        Message(topic, tid, update(tid, "accepted"), {}),
    ]
    await app.state.ctx.bus.publish(records)
    await case_in_status(client, case, "resolved")
    ops = bearer(token())

    async def parked():
        r = await client.get(
            "/v1/ops/deadletters", headers=ops, params={"consumer": "gridcall.departments.adapter.D-BUS"}
        )
        return r.json() if r.json()["count"] == 2 else None

    letters = (await eventually(parked))["deadletters"]
    assert [d["event_id"] for d in letters] == ["k-no-note", None]
    assert "note is required" in letters[0]["error"] and "ce_id" in letters[1]["error"]
    done = await ticket_now(client, token, ticket)
    assert done["status"] == "resolved" and done["claimed_by"]["name"] == "王工"
    assert len([h for h in await history(client, token, case) if h["type"] == "case.claimed"]) == 1
