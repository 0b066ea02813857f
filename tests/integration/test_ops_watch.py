"""The board's cases (`GET /v1/ops/watch`) and ops taking up a supervision
(`POST /v1/ops/cases/{id}/acknowledge`), on SQLite and PostgreSQL with an injected clock: one
row per case however many units missed a limit, what it waits on, how late it is now, and a
case that is resolved or taken up leaving the live list for the history, with when."""

from datetime import datetime, timedelta

import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, file_report, open_ticket
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

IN_G11 = {"lat": 30.505, "lon": 114.305}


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest):
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")


@pytest.fixture
async def stack(base):
    async with running(base, clock=frozen_clock(), handlers=True, timer_interval=0.05) as app:
        yield app


async def watched(app, **params) -> dict:
    r = await app.client.get("/v1/ops/watch", headers=bearer(app.tokens()), params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def filed(app, category: str, description: str) -> dict:
    """A new case in grid G11 (insist: no earlier case of the module's database takes it in)."""
    body = {"category": category, "description": description, "location": IN_G11, "insist": True}
    return await file_report(app.client, body)


def row(board: dict, case: dict, state: str) -> dict | None:
    return next((c for c in board[state] if c["case_id"] == case["case_id"]), None)


async def act(app, unit: str, ticket: dict, action: str, body: dict | None = None) -> dict:
    r = await app.client.post(
        f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(app.tokens(unit)), json=body
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_one_row_per_case_with_its_path_what_it_waits_on_and_how_late_it_is(stack):
    app = stack
    said = "5号楼门口垃圾堆放三天了，" + "气味很大" * 20
    garbage = await filed(app, "garbage", said)
    bus = await filed(app, "bus_stop", "请增设公交站")
    await open_ticket(app.client, "U-G11", app.tokens("U-G11"), garbage["case_id"])
    bus_ticket = await open_ticket(app.client, "D-BUS", app.tokens("D-BUS"), bus["case_id"])
    ours = {garbage["case_id"], bus["case_id"]}
    assert not ours & {c["case_id"] for c in (await watched(app))["live"]}  # nothing late yet
    app.clock.advance(timedelta(days=3))  # past the grid's and the bureau's response limits

    async def both() -> dict | None:
        board = await watched(app)
        g, b = row(board, garbage, "live"), row(board, bus, "live")
        # The bus stop is late from its limit on, and supervised once the timer records its breach.
        return board if g and len(g["path"]) == 2 and b and b["breaches"] else None

    board = await eventually(both)
    g, b = row(board, garbage, "live"), row(board, bus, "live")
    order = [c["case_id"] for c in board["live"] if c["case_id"] in ours]
    assert order == [bus["case_id"], garbage["case_id"]]  # the one late now first
    # The garbage case breached at the grid and escalated: not late now, waiting on the community.
    assert [(s["unit_id"], s["tier"], s["status"], s["breached"]) for s in g["path"]] == [
        ("U-G11", "grid", "ended", True),
        ("U-C1", "community", "open", False),
    ]
    assert g["path"][0]["end_reason"] == "escalated"
    assert (g["waiting"]["unit_id"], g["waiting"]["clock"], g["late"]) == ("U-C1", "response", None)
    assert (g["breaches"], g["last_breach"]["unit_id"], g["last_breach"]["clock"]) == (1, "U-G11", "response")
    assert (g["grid_id"], g["community_id"], g["street_id"], g["category"]) == ("G11", "C1", "S1", "garbage")
    assert g["excerpt"].startswith("5号楼门口垃圾") and g["excerpt"].endswith("…") and len(g["excerpt"]) == 60
    # The bus stop sits at the top tier past its limit: supervised, and late now, from its limit on.
    assert (b["supervised"], b["late"]["clock"], b["late"]["unit_id"]) == (True, "response", "D-BUS")
    assert b["late"]["ticket_id"] == bus_ticket["ticket_id"] == b["waiting"]["ticket_id"]
    assert b["late"]["late_seconds"] > 0 and b["acknowledged"] is None
    assert not ours & {c["case_id"] for c in (await watched(app, street="S2"))["live"]}
    only_bus = {c["case_id"] for c in (await watched(app, category="bus_stop"))["live"]}
    assert bus["case_id"] in only_bus and garbage["case_id"] not in only_bus
    unknown = await app.client.get("/v1/ops/watch", headers=bearer(app.tokens()), params={"street": "S9"})
    assert unknown.status_code == 422 and "S9" in unknown.text
    assert (await app.client.get("/v1/ops/watch", headers=bearer(app.tokens("U-G11")))).status_code == 403

    # The community takes the garbage up: it leaves the live list for the history, met by that claim.
    c1_ticket = await open_ticket(app.client, "U-C1", app.tokens("U-C1"), garbage["case_id"])
    await act(app, "U-C1", c1_ticket, "claim")

    async def taken_up() -> dict | None:
        return await watched(app) if row(await watched(app), garbage, "done") else None

    board = await eventually(taken_up)
    assert row(board, garbage, "live") is None
    done = row(board, garbage, "done")
    assert (done["met"], datetime.fromisoformat(done["met_at"])) == ("claimed", app.clock.now())
    assert (done["waiting"]["unit_id"], done["waiting"]["clock"]) == ("U-C1", "resolution")

    # The bureau resolves the bus stop: done, met by the resolution.
    await act(app, "D-BUS", bus_ticket, "claim")
    await act(app, "D-BUS", bus_ticket, "resolve", {"note": "已增设站点"})

    async def resolved() -> dict | None:
        found = row(await watched(app), bus, "done")
        return found if found and found["met"] == "resolved" else None

    met = await eventually(resolved)
    assert (met["met"], met["status"], met["waiting"]) == ("resolved", "resolved", None)

    # However many are done, `limit` keeps the most recently done: the head of the whole list.
    app.clock.advance(timedelta(minutes=1))
    await act(app, "U-C1", c1_ticket, "resolve", {"note": "已清运"})

    async def both_resolved() -> dict | None:
        board = await watched(app, limit=1000)
        found = row(board, garbage, "done")
        return board if found and found["met"] == "resolved" else None

    everything = await eventually(both_resolved)
    done = [c["case_id"] for c in everything["done"]]
    assert done.index(garbage["case_id"]) < done.index(bus["case_id"])  # resolved a minute after
    assert len(everything["done"]) >= 2
    for n in (1, 2):
        assert (await watched(app, limit=n))["done"] == everything["done"][:n]


async def test_ops_take_up_a_supervision_once_and_the_board_says_who(stack):
    app = stack
    bus = await filed(app, "bus_stop", "请增设公交站")
    garbage = await filed(app, "garbage", "楼道垃圾")
    await open_ticket(app.client, "D-BUS", app.tokens("D-BUS"), bus["case_id"])
    await open_ticket(app.client, "U-G11", app.tokens("U-G11"), garbage["case_id"])
    app.clock.advance(timedelta(days=3))

    async def supervised() -> dict | None:
        found = row(await watched(app), bus, "live")
        return found if found and found["supervised"] else None

    await eventually(supervised)
    ops = bearer(app.tokens())
    take_up = f"/v1/ops/cases/{bus['case_id']}/acknowledge"
    assert (await app.client.post(take_up, headers=bearer(app.tokens("D-BUS")), json={})).status_code == 403
    r = await app.client.post(f"/v1/ops/cases/{garbage['case_id']}/acknowledge", headers=ops, json={})
    assert (
        r.status_code == 409 and r.json()["code"] == "case_conflict" and "not under supervision" in r.json()["detail"]
    )
    r = await app.client.post("/v1/ops/cases/no-such-case/acknowledge", headers=ops, json={})
    assert r.status_code == 404
    r = await app.client.post(take_up, headers=ops, json={"note": "x" * 501})
    assert r.status_code == 422

    r = await app.client.post(take_up, headers=ops, json={"note": "已致电公交集团"})
    assert r.status_code == 200, r.text
    taken = r.json()
    assert taken["by"]["role"] == "ops" and taken["by"]["name"] and taken["note"] == "已致电公交集团"
    again = await app.client.post(take_up, headers={**ops, "Accept-Language": "zh-CN"}, json={})
    assert again.status_code == 409 and again.json()["code"] == "already_acknowledged"
    assert taken["by"]["name"] in again.json()["detail"] and again.json()["message"] == "此督办已有人跟进"

    shown = row(await watched(app), bus, "live")
    assert shown["acknowledged"]["by"]["name"] == taken["by"]["name"]
    assert shown["acknowledged"]["note"] == "已致电公交集团"
    history = (await app.client.get(f"/v1/ops/cases/{bus['case_id']}", headers=ops)).json()["history"]
    assert [h["type"] for h in history].count("case.supervision_acknowledged") == 1

    # The supervision alerts again after its repeat interval: still the same supervision, taken up once.
    app.clock.advance(timedelta(hours=5))

    async def repeated() -> list | None:
        history = (await app.client.get(f"/v1/ops/cases/{bus['case_id']}", headers=ops)).json()["history"]
        alerts = [h for h in history if h["type"] == "case.sla_breached" and h.get("repeat")]
        return alerts or None

    await eventually(repeated)
    after = await app.client.post(take_up, headers=ops, json={})
    assert after.status_code == 409 and after.json()["code"] == "already_acknowledged"
