"""Staff hand-overs (escalate, return, whistle), the satisfaction visit, household flags and
the ops breach list, in-process on the embedded stack with an injected clock."""

from datetime import timedelta

import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock, local, local_midnight
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

IN_G11 = {"lat": 30.505, "lon": 114.305}


@pytest.fixture
async def stack(embedded_settings):
    async with running(embedded_settings, clock=frozen_clock(), handlers=True, timer_interval=0.05) as app:
        yield app.client, app.tokens, app.clock


async def report_and_ticket(client, token, category: str, unit: str):
    case = await file_report(client, {"category": category, "description": "a problem", "location": IN_G11})
    return case, await open_ticket(client, unit, token(unit), case["case_id"])


async def post(client, token, unit, ticket, action, body=None):
    return await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(token(unit)), json=body)


async def test_escalate_needs_a_reason_and_sends_the_case_one_tier_up(stack):
    client, token, _ = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    assert (await post(client, token, "U-G11", ticket, "escalate", {"reason": " "})).status_code == 422
    assert (await post(client, token, "U-G12", ticket, "escalate", {"reason": "x"})).status_code == 403
    r = await post(client, token, "U-G11", ticket, "escalate", {"reason": "needs the community's van"})
    assert r.status_code == 200 and r.json()["status"] == "escalated"
    assert (await post(client, token, "U-G11", ticket, "claim")).status_code == 409
    await open_ticket(client, "U-C1", token("U-C1"), case["case_id"])

    async def at_community():
        view = await case_in_status(client, case, "assigned")
        return view if view["tier"] == "community" else None

    view = await eventually(at_community)
    assert view["unit_id"] == "U-C1"


async def test_the_bureau_cannot_escalate(stack):
    client, token, _ = stack
    _, ticket = await report_and_ticket(client, token, "bus_stop", "D-BUS")
    r = await post(client, token, "D-BUS", ticket, "escalate", {"reason": "x"})
    assert r.status_code == 409 and "no tier above" in r.json()["detail"]


async def test_return_validates_its_reason_and_suggested_unit(stack):
    client, token, _ = stack
    _, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    r = await post(client, token, "U-G11", ticket, "return", {"reason_code": "lazy", "reason": "x"})
    assert r.status_code == 422 and "not_our_jurisdiction" in r.text
    r = await post(
        client, token, "U-G11", ticket, "return", {"reason_code": "other", "reason": "x", "suggested_unit_id": "U-MARS"}
    )
    assert r.status_code == 422  # one 422 shape everywhere: a list naming the field
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "suggested_unit_id"] and "U-MARS" in problem["msg"]
    r = await post(
        client, token, "U-G11", ticket, "return", {"reason_code": "not_our_jurisdiction", "reason": "next grid"}
    )
    assert r.status_code == 200 and r.json()["status"] == "returned"


async def test_whistle_is_for_the_street_office_and_names_departments(stack):
    client, token, _ = stack
    _, grid_ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    body = {"lead": "D-URBAN", "co": ["D-WATER"], "reason": "joint"}
    assert (await post(client, token, "U-G11", grid_ticket, "whistle", body)).status_code == 409
    _, street_ticket = await report_and_ticket(client, token, "road_damage", "U-S1")
    r = await post(client, token, "U-S1", street_ticket, "whistle", {**body, "co": ["U-G12"]})
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "co", 0] and "not a department" in problem["msg"]
    r = await post(client, token, "U-S1", street_ticket, "whistle", {**body, "lead": "U-NOPE"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "lead"]
    r = await post(client, token, "U-S1", street_ticket, "whistle", {**body, "co": ["D-URBAN"]})
    assert r.status_code == 422 and "once" in r.json()["detail"][0]["msg"]
    assert (await post(client, token, "U-S1", street_ticket, "whistle", body)).status_code == 200


async def test_the_satisfaction_visit_opens_only_once_a_case_is_resolved(stack):
    client, token, _ = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    url, track = f"/v1/cases/{case['case_id']}/satisfaction", {"X-Tracking-Token": case["tracking_token"]}
    r = await client.post(url, headers=track, json={"answer": "satisfied"})
    assert r.status_code == 409 and "once it is resolved" in r.json()["detail"]
    assert (await client.post(url, headers={"X-Tracking-Token": "x"}, json={"answer": "satisfied"})).status_code == 404
    assert (await client.post(url, headers=track, json={"answer": "meh"})).status_code == 422


async def test_only_a_grid_worker_may_flag_a_household_and_the_flag_raises_priority(stack):
    client, token, _ = stack
    body = {
        "category": "garbage",
        "description": "elderly resident, no heating",
        "location": IN_G11,
        "household_flag": "blue",
    }
    assert (await client.post("/v1/reports", json=body)).status_code == 403
    assert (await client.post("/v1/reports", json=body, headers=bearer(token("U-C1")))).status_code == 403
    r = await client.post("/v1/reports", json=body, headers=bearer(token("U-G11")))
    assert r.status_code == 202
    ticket = await open_ticket(client, "U-G11", token("U-G11"), r.json()["case_id"])
    assert ticket["priority"] == "urgent"


async def test_a_revoked_grid_worker_flags_no_household(stack):
    """Departments revokes the account; intake hears of it (gridcall.staff.revoked) and refuses
    the token's flag, as departments refuses the token itself."""
    client, token, _ = stack
    ops = bearer(token())
    r = await client.post("/v1/staff", headers=ops, json={"unit_id": "U-G11", "name": "赵网格员", "role": "handler"})
    assert r.status_code in (200, 201), r.text
    worker, staff_id = bearer(r.json()["token"]), r.json()["staff_id"]
    body = {
        "category": "garbage",
        "description": "独居老人家门口",
        "location": IN_G11,
        "household_flag": "blue",
        "insist": True,
    }
    assert (await client.post("/v1/reports", json=body, headers=worker)).status_code == 202
    assert (await client.post(f"/v1/staff/{staff_id}/revoke", headers=ops)).status_code == 200

    async def refused():
        r = await client.post("/v1/reports", json=body, headers=worker)
        return r if r.status_code != 202 else None

    r = await eventually(refused)
    assert r.status_code == 403 and r.json()["code"] == "token_revoked" and "revoked" in r.json()["detail"]
    assert (await client.post("/v1/reports", json={**body, "household_flag": None}, headers=worker)).status_code == 202


async def test_ops_see_a_supervised_breach_with_its_history_and_can_filter(stack):
    client, token, clock = stack
    case, ticket = await report_and_ticket(client, token, "bus_stop", "D-BUS")
    clock.advance(timedelta(days=3))  # far past the bureau's response limit

    async def listed():
        r = await client.get("/v1/ops/breaches", headers=bearer(token()))
        assert r.status_code == 200, r.text
        return next((b for b in r.json() if b["case_id"] == case["case_id"] and b["supervised"]), None)

    breach = await eventually(listed)
    assert (breach["unit_id"], breach["tier"], breach["clock"]) == ("D-BUS", "bureau", "response")
    assert breach["late_seconds"] > 0
    assert [e["type"] for e in breach["escalations"]] == ["case.sla_breached"]
    assert (await client.get("/v1/ops/breaches", params={"street": "S2"}, headers=bearer(token()))).json() == []
    only_bus = await client.get(
        "/v1/ops/breaches", params={"category": "bus_stop", "street": "S1"}, headers=bearer(token())
    )
    assert [b["case_id"] for b in only_bus.json()] == [case["case_id"]]
    assert (await client.get("/v1/ops/breaches", headers=bearer(token("U-G11")))).status_code == 403

    await post(client, token, "D-BUS", ticket, "claim")  # claiming satisfies the response limit

    async def cleared():
        return await listed() is None

    await eventually(cleared)


async def test_a_resident_withdraws_a_case_nobody_claimed_and_its_ticket_leaves_the_queue(stack):
    client, token, _ = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    url, track = f"/v1/cases/{case['case_id']}/cancel", {"X-Tracking-Token": case["tracking_token"]}
    assert (await client.post(url, headers={"X-Tracking-Token": "x"})).status_code == 404
    r = await client.post(url, headers=track, json={"reason": "a neighbour cleared it"})
    assert r.status_code == 202
    assert (await client.post(url, headers=track)).status_code == 409  # already being withdrawn
    view = await case_in_status(client, case, "closed")
    assert view["timeline"][-1] == {**view["timeline"][-1], "type": "closed", "reason": "cancelled"}

    async def withdrawn():
        r = await client.get(f"/v1/tickets/{ticket['ticket_id']}", headers=bearer(token("U-G11")))
        return r.json()["status"] == "withdrawn"

    await eventually(withdrawn)


async def test_a_resident_whose_report_joined_a_case_follows_it_but_cannot_close_it(stack):
    """Only the first reporter cancels the case or answers its satisfaction visit; a neighbour
    whose report was linked to it follows it with their own token."""
    client, token, _ = stack
    first = await file_report(client, {"category": "garbage", "description": "楼道垃圾", "location": IN_G11})
    joined = await file_report(client, {"category": "garbage", "description": "楼道又堆满了", "location": IN_G11})
    assert joined["linked_to_existing"] and joined["case_id"] == first["case_id"]
    mine, theirs = {"X-Tracking-Token": first["tracking_token"]}, {"X-Tracking-Token": joined["tracking_token"]}
    case_url = f"/v1/cases/{first['case_id']}"
    assert (await client.get(case_url, headers=theirs)).status_code == 200  # follows it

    r = await client.post(f"{case_url}/cancel", headers={**theirs, "Accept-Language": "zh-CN"}, json={"reason": "x"})
    assert (
        r.status_code == 403 and r.json()["code"] == "not_first_reporter" and "only that resident" in r.json()["detail"]
    )
    assert "首位反映人" in r.json()["message"]
    ticket = await open_ticket(client, "U-G11", token("U-G11"), first["case_id"])
    await post(client, token, "U-G11", ticket, "claim")
    await post(client, token, "U-G11", ticket, "resolve", {"note": "已清理"})
    await case_in_status(client, first, "resolved")
    r = await client.post(f"{case_url}/satisfaction", headers=theirs, json={"answer": "satisfied"})
    assert r.status_code == 403 and r.json()["code"] == "not_first_reporter"
    assert (await case_in_status(client, first, "resolved"))["status"] == "resolved"  # not closed by the neighbour
    r = await client.post(f"{case_url}/satisfaction", headers=mine, json={"answer": "satisfied"})
    assert r.status_code == 202  # the first reporter's own answer is still hers to give


async def test_a_claimed_case_cannot_be_withdrawn(stack):
    client, token, _ = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    await post(client, token, "U-G11", ticket, "claim")
    await case_in_status(client, case, "claimed")
    r = await client.post(f"/v1/cases/{case['case_id']}/cancel", headers={"X-Tracking-Token": case["tracking_token"]})
    assert r.status_code == 409 and "nobody has claimed" in r.json()["detail"]


async def test_silence_after_resolution_closes_the_case_when_the_window_ends(stack):
    client, token, clock = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    await post(client, token, "U-G11", ticket, "claim")
    await post(client, token, "U-G11", ticket, "resolve", {"note": "cleared"})
    await case_in_status(client, case, "resolved")
    clock.advance(timedelta(days=3, seconds=1))  # the policy's satisfaction window
    view = await case_in_status(client, case, "closed")
    assert view["timeline"][-1]["reason"] == "no_answer"
    r = await client.post(
        f"/v1/cases/{case['case_id']}/satisfaction",
        headers={"X-Tracking-Token": case["tracking_token"]},
        json={"answer": "unsatisfied"},
    )
    assert r.status_code == 409  # too late to answer


async def test_an_idempotency_key_is_remembered_for_24_hours(stack):
    client, _, clock = stack
    body = {"category": "noise", "description": "Karaoke", "location": IN_G11}
    key = {"Idempotency-Key": "retry-1"}
    first = (await client.post("/v1/reports", json=body, headers=key)).json()
    clock.advance(timedelta(hours=23))
    assert (await client.post("/v1/reports", json=body, headers=key)).json() == first
    assert (await client.post("/v1/reports", json={**body, "description": "x"}, headers=key)).status_code == 409
    clock.advance(timedelta(hours=2))  # past 24 hours: the key is free again
    later = await client.post("/v1/reports", json={**body, "description": "Karaoke again", "insist": True}, headers=key)
    assert later.status_code == 202 and later.json()["case_id"] != first["case_id"]


async def test_ops_see_the_satisfaction_rate_per_unit_that_resolved(stack):
    """满意率: satisfied / answered, per resolving unit; silence counts apart; a reopened case
    resolved again is a second visit."""
    client, token, clock = stack

    async def resolved(grid_unit: str, lat: float):
        case, ticket = await report_and_ticket_at(client, token, grid_unit, lat)
        await post(client, token, grid_unit, ticket, "claim")
        await post(client, token, grid_unit, ticket, "resolve", {"note": "done"})
        await case_in_status(client, case, "resolved")
        return case

    async def answer(case, verdict):
        r = await client.post(
            f"/v1/cases/{case['case_id']}/satisfaction",
            headers={"X-Tracking-Token": case["tracking_token"]},
            json={"answer": verdict},
        )
        assert r.status_code == 202, r.text

    happy, grumpy, silent = [await resolved("U-G11", lat) for lat in (30.501, 30.505, 30.509)]
    other = await resolved("U-G12", 30.505 + 0.01)
    await answer(happy, "satisfied")
    await answer(grumpy, "unsatisfied")
    await answer(other, "satisfied")
    await case_in_status(client, happy, "closed")
    await case_in_status(client, other, "closed")
    clock.advance(timedelta(days=3, seconds=1))  # the satisfaction window: silence closes
    await case_in_status(client, silent, "closed")

    async def stats(**query):
        r = await client.get("/v1/ops/satisfaction", params=query, headers=bearer(token()))
        assert r.status_code == 200, r.text
        return r.json()

    async def counted():
        s = await stats()
        return s if s["satisfied"] + s["unsatisfied"] + s["no_answer"] == 4 else None

    total = await eventually(counted)
    assert (total["satisfied"], total["unsatisfied"], total["no_answer"], total["rate"]) == (2, 1, 1, 0.6667)
    g11 = next(u for u in total["units"] if u["unit_id"] == "U-G11")
    assert (g11["satisfied"], g11["unsatisfied"], g11["no_answer"], g11["rate"]) == (1, 1, 1, 0.5)
    assert (g11["unit_name"], g11["unit_name_zh"]) == ("Grid G11 workstation", "枫林社区第一网格工作站")
    only = await stats(unit="U-G12")
    assert [u["unit_id"] for u in only["units"]] == ["U-G12"] and only["rate"] == 1.0
    assert (await stats(category="noise"))["rate"] is None
    assert (await stats(until="2026-01-01T00:00:00Z", since="2025-12-01T00:00:00Z"))["units"] == []
    r = await client.get("/v1/ops/satisfaction", headers=bearer(token("U-G11")))
    assert r.status_code == 403  # ops only


async def report_and_ticket_at(client, token, unit: str, lat: float):
    body = {"category": "garbage", "description": "a problem", "location": {"lat": lat, "lon": 114.305}}
    case = await file_report(client, {**body, "insist": True})
    return case, await open_ticket(client, unit, token(unit), case["case_id"])


async def test_ops_stats_count_a_journey_and_refuse_bad_windows_and_unknown_places(stack):
    client, token, clock = stack
    case, ticket = await report_and_ticket(client, token, "garbage", "U-G11")
    await post(client, token, "U-G11", ticket, "claim")
    await post(client, token, "U-G11", ticket, "resolve", {"note": "done"})
    await case_in_status(client, case, "resolved")
    clock.advance(timedelta(seconds=1))  # the window ends at now, excluded
    ops = bearer(token())

    async def stats(**query):
        return await client.get("/v1/ops/stats", params=query, headers=ops)

    async def counted():
        r = await stats(street="S1", tier="grid")
        assert r.status_code == 200, r.text
        s = r.json()
        return s if s["resolved"] == 1 else None

    s = await eventually(counted)
    assert (s["reported"], s["assigned"], s["claimed"], s["response"]["rate"], s["resolution"]["rate"]) == (
        1,
        1,
        1,
        1.0,
        1.0,
    )
    assert s["grid_closure"] == {"kept": 1, "started": 1, "rate": 1.0}
    assert s["since"].endswith("+08:00")  # the policy's time zone
    assert (await stats(street="S2")).json()["reported"] == 0

    def problem(r, where):
        assert r.status_code == 422, r.text
        [p] = r.json()["detail"]
        assert p["loc"] == ["query", where]
        return p["msg"]

    assert "time zone" in problem(await stats(since="2026-11-01T00:00:00"), "since")
    assert "after since" in problem(await stats(since="2026-11-02T00:00:00Z", until="2026-11-01T00:00:00Z"), "until")
    problem(await stats(since="yesterday"), "since")
    assert "U-MARS" in problem(await stats(unit="U-MARS"), "unit")
    assert "S9" in problem(await stats(street="S9"), "street")
    assert "C9" in problem(await stats(community="C9"), "community")
    assert "no category" in problem(await stats(category="dragons"), "category")
    problem(await stats(tier="moon"), "tier")
    daily = await client.get("/v1/ops/stats/daily", params={"until": "2026-11-03T00:00:00"}, headers=ops)
    assert "time zone" in problem(daily, "until")
    daily = await client.get("/v1/ops/stats/daily", params={"unit": "U-MARS"}, headers=ops)
    assert "U-MARS" in problem(daily, "unit")
    window = {"since": local_midnight().isoformat(), "until": local_midnight(1).isoformat()}
    [today] = (await client.get("/v1/ops/stats/daily", params=window, headers=ops)).json()["days"]
    assert (today["day"], today["opened"], today["resolved"]) == (local().date().isoformat(), 1, 1)
    assert (await client.get("/v1/ops/stats", headers=bearer(token("U-G11")))).status_code == 403

    cards = await client.get("/v1/ops/scorecards", params={"kind": "grid", "format": "csv"}, headers=ops)
    assert cards.status_code == 200 and cards.headers["content-type"].startswith("text/csv")
    assert "attachment" in cards.headers["content-disposition"]
    rows = cards.content.decode("utf-8-sig").splitlines()
    assert rows[0].startswith("rank,unit_id,unit_name,unit_name_zh,kind")
    assert any(row.split(",")[1:4] == ["U-G11", "Grid G11 workstation", "枫林社区第一网格工作站"] for row in rows[1:])
    cards = (await client.get("/v1/ops/scorecards", params={"kind": "grid"}, headers=ops)).json()
    g11 = next(u for u in cards["units"] if u["unit_id"] == "U-G11")
    assert g11["unit_name_zh"] == "枫林社区第一网格工作站"
    assert (g11["assigned"], g11["resolved"], g11["score"], g11["rank"]) == (1, 1, None, None)  # too few to rank
    problem(await client.get("/v1/ops/scorecards", headers=ops), "kind")
    problem(await client.get("/v1/ops/scorecards", params={"kind": "moon"}, headers=ops), "kind")
    problem(await client.get("/v1/ops/scorecards", params={"kind": "grid", "format": "xls"}, headers=ops), "format")
    late = {"kind": "grid", "since": "2026-11-02T00:00:00"}
    assert "time zone" in problem(await client.get("/v1/ops/scorecards", params=late, headers=ops), "since")
    assert (await client.get("/v1/ops/scorecards?kind=grid", headers=bearer(token("U-G11")))).status_code == 403


async def test_ops_breach_history_keeps_every_breach_with_what_followed(stack):
    """A breach below the bureau escalates at once, so the current list never shows it; the
    history does, with the unit that missed, the clock and the escalation that followed."""
    client, token, clock = stack
    grid_case, _ = await report_and_ticket(client, token, "garbage", "U-G11")
    bus_case, bus_ticket = await report_and_ticket(client, token, "bus_stop", "D-BUS")
    clock.advance(timedelta(days=3))
    ops = bearer(token())

    async def history(**query):
        until = (clock.now() + timedelta(hours=1)).isoformat()
        r = await client.get("/v1/ops/breaches", params={"state": "all", "until": until, **query}, headers=ops)
        assert r.status_code == 200, r.text
        return r.json()

    async def recorded():
        missed = {(b["case_id"], b["unit_id"]): b for b in await history()}
        return missed if {(grid_case["case_id"], "U-G11"), (bus_case["case_id"], "D-BUS")} <= set(missed) else None

    missed = await eventually(recorded)
    grid = missed[(grid_case["case_id"], "U-G11")]
    assert (grid["tier"], grid["clock"], grid["outcome"]) == ("grid", "response", "escalated")
    assert (grid["escalated_to_unit_id"], grid["escalated_to_tier"]) == ("U-C1", "community")
    assert grid["breached_at"] and grid["late_seconds"] >= 0 and grid["met_at"] is None
    bus = missed[(bus_case["case_id"], "D-BUS")]
    assert (bus["outcome"], bus["escalated_to_unit_id"]) == ("supervised", None)
    assert [b["unit_id"] for b in await history(unit="U-G11")] == ["U-G11"]

    await post(client, token, "D-BUS", bus_ticket, "claim")  # late: the response clock is met after all

    async def met():
        [b] = await history(unit="D-BUS")
        return b if b["met_at"] else None

    assert (await eventually(met))["clock"] == "response"

    def problem(r, where):
        assert r.status_code == 422, r.text
        return r.json()["detail"][0]["loc"] == ["query", where]

    assert problem(await client.get("/v1/ops/breaches", params={"state": "past"}, headers=ops), "state")
    r = await client.get("/v1/ops/breaches", params={"state": "all", "since": "2026-11-01T00:00"}, headers=ops)
    assert problem(r, "since") and "time zone" in r.text
    window = {"state": "all", "since": "2026-11-02T00:00Z", "until": "2026-11-01T00:00Z"}
    assert problem(await client.get("/v1/ops/breaches", params=window, headers=ops), "until")
    assert problem(await client.get("/v1/ops/breaches", params={"unit": "U-MARS"}, headers=ops), "unit")
