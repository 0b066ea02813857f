"""The staff side as a person uses it all day, in-process on the embedded stack with an injected
clock: the queue (work to do, nearest due first, filters, cursor pages, summary), each action
recorded with who did it, notes reaching the resident, evidence, the call-back contact, why a
ticket arrived, and a revoked account refused at once."""

from datetime import timedelta

import httpx
import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

G11_CORNER = (30.5005, 114.3005)  # G11 spans lat 30.50-30.51, lon 114.30-114.31


def spot(i: int) -> dict[str, float]:
    """The i-th of 121 points of G11, 80 m apart: too far apart to be taken for one problem."""
    lat, lon = G11_CORNER
    return {"lat": round(lat + 0.0008 * (i // 11), 6), "lon": round(lon + 0.0008 * (i % 11), 6)}


@pytest.fixture
async def stack(embedded_settings):
    async with running(
        embedded_settings, clock=frozen_clock(), handlers=True, supervisors=["U-C1", "U-S1"], timer_interval=0.05
    ) as app:
        yield app.client, app.tokens, app.supervisors, app.clock


async def report(client, i: int = 0, **extra):
    body = {"category": "garbage", "description": f"rubbish heap number {i}", "location": spot(i), **extra}
    return await file_report(client, body)


async def queue(client, token, unit="U-G11", **params):
    r = await client.get(f"/v1/units/{unit}/tickets", headers=bearer(token), params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def act(client, token, ticket, action, body=None, status=200):
    r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(token), json=body)
    assert r.status_code == status, r.text
    return r.json()


async def test_the_default_queue_is_the_work_to_do_most_urgent_first_and_every_ticket_is_reachable(stack):
    """With 121 tickets the old default list showed the 100 oldest, resolved ones included,
    and the 21 newest were invisible."""
    client, handlers, _, clock = stack
    worker = handlers("U-G11")
    cases = []
    for i in range(120):
        cases.append(await report(client, i))
        clock.advance(timedelta(minutes=1))
    # the newest report comes from a flagged household: urgent, so its response limit is nearest
    urgent = await file_report(
        client,
        {"category": "garbage", "description": "urgent heap", "location": spot(120), "household_flag": "red"},
        headers=bearer(worker),
    )
    await eventually(lambda: _count(client, worker, 121), timeout=60)
    first = await queue(client, worker, limit=1)
    assert first["tickets"][0]["case_id"] == urgent["case_id"]
    # two resolved: they leave the default queue
    for case in cases[:2]:
        ticket = await open_ticket(client, "U-G11", worker, case["case_id"])
        await act(client, worker, ticket, "claim")
        await act(client, worker, ticket, "resolve", {"note": "cleared"})

    seen, cursor, pages = [], None, 0
    while True:
        page = await queue(client, worker, limit=50, **({"cursor": cursor} if cursor else {}))
        seen += page["tickets"]
        pages += 1
        if (cursor := page["next_cursor"]) is None:
            break
    assert pages == 3 and len(seen) == 119 and len({t["ticket_id"] for t in seen}) == 119
    assert {t["status"] for t in seen} == {"open"}
    dues = [t["clock"]["due"] for t in seen]
    assert dues == sorted(dues)
    resolved = await queue(client, worker, status="resolved")
    assert {t["case_id"] for t in resolved["tickets"]} == {c["case_id"] for c in cases[:2]}
    both = await queue(client, worker, status=["resolved", "open"], limit=200)
    assert len(both["tickets"]) == 121
    summary = (await client.get("/v1/units/U-G11/summary", headers=bearer(worker))).json()
    assert (summary["counts"]["open"], summary["counts"]["resolved"], summary["to_do"]) == (119, 2, 119)
    assert summary["late"] == 0


async def test_late_means_past_the_limit_running_now(stack):
    """At the bureau tier a breach stays with the department (督办), so its ticket shows as late."""
    client, handlers, _, clock = stack
    bus = handlers("D-BUS")
    body = {"category": "bus_stop", "description": "A stop on Maple Lane, please", "location": spot(0)}
    case = await file_report(client, body)
    ticket = await open_ticket(client, "D-BUS", bus, case["case_id"])
    assert (await queue(client, bus, unit="D-BUS", late="true"))["tickets"] == []
    clock.advance(timedelta(days=3))  # past one working day from Monday 17:00
    late = await queue(client, bus, unit="D-BUS", late="true")
    assert [t["ticket_id"] for t in late["tickets"]] == [ticket["ticket_id"]]
    assert late["tickets"][0]["late"] and late["tickets"][0]["clock"]["seconds_left"] < 0
    assert (await queue(client, bus, unit="D-BUS", late="false"))["tickets"] == []
    summary = (await client.get("/v1/units/D-BUS/summary", headers=bearer(bus))).json()
    assert (summary["to_do"], summary["late"]) == (1, 1)


async def _count(client, token, n):
    page = await queue(client, token, status=["open", "claimed", "resolved"], limit=200)
    return len(page["tickets"]) >= n or None


async def test_a_misspelt_filter_or_a_forged_cursor_is_a_422_that_says_what_to_fix(stack):
    client, handlers, _, _ = stack
    worker = handlers("U-G11")
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(worker), params={"stauts": "open"})
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["query", "stauts"] and "status" in problem["msg"]
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(worker), params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and "next_cursor" in r.json()["detail"][0]["msg"]
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(worker), params={"status": "done"})
    assert r.status_code == 422
    r = await client.get("/v1/units/U-NOPE/tickets", headers=bearer(handlers()))
    assert r.status_code == 404


async def test_every_action_records_its_person_and_only_the_claimer_or_a_supervisor_finishes(stack):
    client, handlers, supervisors, _ = stack
    li = handlers("U-G11")
    async with httpx.AsyncClient(transport=client._transport, base_url="http://gridcall") as ops_client:
        r = await ops_client.post(
            "/v1/staff", headers=bearer(handlers()), json={"unit_id": "U-G11", "name": "Wang Fang"}
        )
    assert r.status_code == 201, r.text
    wang = r.json()["token"]
    case = await report(client, contact={"name": "Zhao Min", "phone": "13800000000"})
    ticket = await open_ticket(client, "U-G11", li, case["case_id"])
    assert ticket["contact"] == {"name": "Zhao Min", "phone": "13800000000"}  # the handling unit calls back

    claimed = await act(client, li, ticket, "claim")
    assert claimed["claimed_by"]["name"] == "handler of U-G11" and claimed["claimed_by"]["staff_id"]
    refused = await act(client, wang, ticket, "claim", status=409)
    assert "handler of U-G11" in refused["detail"]
    for action, body in (("resolve", {"note": "done"}), ("unclaim", None), ("escalate", {"reason": "too big"})):
        r = await act(client, wang, ticket, action, body, status=403)
        assert "someone else claimed this ticket" in r["detail"] and "rubbish" not in str(r)

    noted = await act(client, wang, ticket, "notes", {"text": "Called the resident back", "visibility": "internal"})
    await act(client, li, ticket, "notes", {"text": "Cleaners booked for 3 pm", "visibility": "public"})
    with_photo = await act(
        client, li, ticket, "evidence", {"url": "https://img.example.cn/before.jpg", "caption": "before"}
    )
    assert [n["text"] for n in noted["notes"]] == ["Called the resident back"]
    assert noted["notes"][0]["by"]["name"] == "Wang Fang"
    assert with_photo["evidence"][0]["url"] == "https://img.example.cn/before.jpg"
    r = await client.post(
        f"/v1/tickets/{ticket['ticket_id']}/evidence",
        headers=bearer(li),
        json={"url": "javascript:alert(1)", "caption": "x"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "url"]
    for i in range(9):
        await act(client, li, ticket, "evidence", {"url": f"https://img.example.cn/{i}.jpg", "caption": f"#{i}"})
    r = await act(client, li, ticket, "evidence", {"url": "https://img.example.cn/11.jpg", "caption": "11"}, 409)
    assert "at most 10" in r["detail"]

    # the supervisor above sees it read-only, without the resident's contact; cannot act on it
    supervisor = supervisors("U-C1")
    seen = await queue(client, supervisor)
    mine = next(t for t in seen["tickets"] if t["ticket_id"] == ticket["ticket_id"])
    assert mine["contact"] is None and mine["claimed_by"]["name"] == "handler of U-G11"
    r = await act(client, supervisor, ticket, "resolve", {"note": "x"}, status=403)
    assert "rubbish" not in str(r)

    # Wang cannot unclaim Li's ticket; Li can, and then Wang claims and resolves it
    await act(client, li, ticket, "unclaim")
    await act(client, wang, ticket, "claim")
    done = await act(client, wang, ticket, "resolve", {"note": "Heap cleared, corridor washed"})
    assert done["resolved_by"]["name"] == "Wang Fang" and done["status"] == "resolved"

    # the resident sees the public note, never the internal one; the dispatcher's history names people
    view = await case_in_status(client, case, "resolved")
    notes = [e.get("note") for e in view["timeline"] if e["type"] == "note"]
    assert notes == ["Cleaners booked for 3 pm"]
    assert "Called the resident back" not in str(view)
    history = (await client.get(f"/v1/ops/cases/{case['case_id']}", headers=bearer(handlers()))).json()["history"]
    by = [
        (h["type"], (h.get("by") or {}).get("name")) for h in history if h["type"] in ("case.claimed", "case.unclaimed")
    ]
    assert by == [
        ("case.claimed", "handler of U-G11"),
        ("case.unclaimed", "handler of U-G11"),
        ("case.claimed", "Wang Fang"),
    ]
    reported = next(h for h in history if h["type"] == "case.handler_reported")
    assert reported["by"]["name"] == "Wang Fang"
    assert "13800000000" not in str(history)  # the contact goes to the handling unit only


async def test_an_escalated_ticket_says_why_it_arrived_and_carries_the_earlier_public_notes(stack):
    client, handlers, supervisors, _ = stack
    grid = handlers("U-G11")
    case = await report(client)
    ticket = await open_ticket(client, "U-G11", grid, case["case_id"])
    await act(client, grid, ticket, "notes", {"text": "Too big for the grid: a skip is needed", "visibility": "public"})

    async def open311_says_it():
        r = await client.get(f"/open311/v2/requests/{case['case_id']}.json")
        return r.json()[0]["status_notes"] == "Too big for the grid: a skip is needed" or None

    await eventually(open311_says_it)
    await act(client, grid, ticket, "escalate", {"reason": "needs a skip lorry"})
    community = handlers("U-C1")
    arrived = await open_ticket(client, "U-C1", community, case["case_id"])
    assert "上报" in arrived["arrived_because"] and "needs a skip lorry" in arrived["arrived_because"]
    assert [n["text"] for n in arrived["case_notes"]] == ["Too big for the grid: a skip is needed"]
    assert arrived["case_notes"][0]["unit_id"] == "U-G11"


async def test_a_supervisor_reassigns_inside_its_subtree_only(stack):
    client, handlers, supervisors, _ = stack
    case = await report(client)
    ticket = await open_ticket(client, "U-G11", handlers("U-G11"), case["case_id"])
    street = supervisors("U-S1")
    r = await act(client, supervisors("U-C1"), ticket, "reassign", {"unit_id": "U-G21", "reason": "x"}, status=422)
    assert "U-C1 or a unit under it" in r["detail"][0]["msg"]
    await act(client, handlers("U-G11"), ticket, "reassign", {"unit_id": "U-G12", "reason": "x"}, status=403)
    moved = await act(client, street, ticket, "reassign", {"unit_id": "U-G12", "reason": "the heap is on G12's side"})
    assert moved["status"] == "reassigned"
    arrived = await open_ticket(client, "U-G12", handlers("U-G12"), case["case_id"])
    assert "reassigned" in arrived["arrived_because"] and arrived["tier"] == "grid"


async def test_a_revoked_account_is_refused_on_the_next_request(stack):
    client, handlers, _, _ = stack
    ops = bearer(handlers())
    r = await client.post("/v1/staff", headers=ops, json={"unit_id": "U-G11", "name": "Temp Worker"})
    person = r.json()
    me = await client.get("/v1/me", headers=bearer(person["token"]))
    assert me.status_code == 200 and me.json()["units"] == [
        {"unit_id": "U-G11", "name": me.json()["unit_name"], "kind": "grid"}
    ]
    r = await client.post("/v1/staff", headers=ops, json={"unit_id": "U-G11", "name": "Temp Worker"})
    assert r.status_code == 409 and "already has a person named" in r.json()["detail"]
    r = await client.post(f"/v1/staff/{person['staff_id']}/revoke", headers=ops)
    assert r.status_code == 200 and r.json()["revoked_at"]
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(person["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    listed = (await client.get("/v1/staff", headers=ops, params={"unit_id": "U-G11"})).json()
    assert any(p["staff_id"] == person["staff_id"] and p["revoked_at"] for p in listed)
