"""Every figure of `/v1/ops/stats` is exact: a seeded history of a few thousand cases is made
by the dispatcher's own pure `Router` (claims, resolutions, 上报, 退单, 吹哨, breaches fired by
its timers, supervision, satisfaction visits, reopenings, cancellations), written to PostgreSQL
as the dispatcher's repository writes it, and each figure is recomputed here from the events
alone (never from the tables) and compared with the API's answer."""

import asyncio
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from dispatcher import api
from dispatcher.domain import AssignmentStatus, Case, DispatchError, Router, Timer, timers
from dispatcher.repository import _assignment_row, _history_rows, _new_case_row
from dispatcher.tables import assignments, cases, history
from gridcall.migrate import upgrade
from services.district.events import (
    CaseAssigned,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseHandlerReported,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseReturned,
    CaseSatisfactionAnswered,
    CaseSlaBreached,
    CaseUnassigned,
    CaseUnclaimed,
    CaseWhistled,
    Event,
    Location,
    Priority,
    ReturnReason,
    TicketClaimed,
    TicketEscalated,
    TicketResolved,
    TicketReturned,
    TicketWhistled,
)
from services.district.jurisdiction import UnitKind
from services.district.policy import load_policy
from services.messaging.envelope import Envelope
from services.runtime.settings import Settings
from services.storage.bulk import insert_rows
from services.storage.db import Database
from services.web import edge
from services.web.auth import Authenticator
from tests.support.clock import frozen_clock
from tests.support.journey import TEST_SECRET, bearer
from tests.support.staff import demo_jurisdiction

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, tzinfo=UTC)
NOW = START + timedelta(days=24)
CASES = 2500
Recorded = tuple[str, datetime, Event]


class Simulation:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.j = demo_jurisdiction()
        self.policy = load_policy(Settings().policy_file, self.j)
        self.router = Router(self.j, self.policy)
        self.events: list[Recorded] = []
        self.cases: dict[str, tuple[Case, datetime]] = {}  # the final case, when reported
        self.departments = [u.id for u in self.j.units if u.kind is UnitKind.DEPARTMENT]
        self.ids = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"a{self.ids:06d}"

    def step(self, case: Case | None, fn: Any, event: Any, at: datetime) -> Case:
        decision = fn(case, event, at, self.new_id)
        self.events += [(decision.case.case_id, at, e) for e in decision.events]
        return decision.case

    def run_timers(self, case: Case, until: datetime) -> Case:
        while True:
            due = [t for t in timers(case, self.policy) if t.due_at <= until]
            if not due:
                return case
            first: Timer = min(due, key=lambda t: t.due_at)
            case = self.step(case, lambda c, t, at, new_id: self.router.fire(c, t, at, new_id), first, first.due_at)

    def delay(self) -> timedelta:
        r = self.rng
        return r.choice(
            [timedelta(minutes=r.uniform(1, 90)), timedelta(hours=r.uniform(1, 20)), timedelta(days=r.uniform(1, 5))]
        )

    def one(self, n: int) -> None:
        r, router = self.rng, self.router
        case_id = f"fig-{n:05d}"
        grid = r.choice(self.j.grids).id
        category = r.choice([c.code for c in self.policy.categories])
        reported = START + timedelta(seconds=r.uniform(0, 20 * 86400))
        report = CaseReported(
            case_id=case_id,
            category=category,
            description="seeded",
            location=Location(lat=30.5, lon=114.3),
            grid_id=grid,
            priority=r.choice([Priority.NORMAL, Priority.NORMAL, Priority.URGENT]),
        )
        case = self.step(None, router.report, report, reported)
        at = reported
        for _ in range(r.randint(1, 9)):
            at += self.delay()
            case = self.run_timers(case, min(at, NOW))
            if at >= NOW or case.closed or not (case.resolved or case.active):
                break  # (a lead resolved and its co-handler returned: the case waits with no one)
            try:
                case = self.act(case, at)
            except DispatchError:
                pass
        case = self.run_timers(case, NOW)
        self.cases[case_id] = (case, reported)

    def act(self, case: Case, at: datetime) -> Case:
        r, router = self.rng, self.router
        if case.resolved:
            answer = r.random()
            if answer < 0.3:
                return case  # silence: the window closes it
            ev = CaseSatisfactionAnswered(case_id=case.case_id, satisfied=answer < 0.75)
            return self.step(case, router.satisfaction, ev, at)
        a = r.choice(case.active)
        ids = {"case_id": case.case_id, "ticket_id": a.assignment_id, "unit_id": a.unit_id}
        roll = r.random()
        if roll < 0.04 and all(x.status is AssignmentStatus.OPEN for x in case.active):
            return self.step(case, router.cancel, CaseCancelRequested(case_id=case.case_id), at)
        if roll < 0.12:
            ev: Any = TicketReturned(**ids, reason_code=ReturnReason.NOT_OUR_JURISDICTION, reason="not ours")
            return self.step(case, router.return_, ev, at)
        if roll < 0.2:
            return self.step(case, router.escalate, TicketEscalated(**ids, reason="too big"), at)
        if roll < 0.3 and a.tier.value == "street":
            lead, co = r.sample(self.departments, 2)
            ev = TicketWhistled(**ids, lead_unit_id=lead, co_unit_ids=[co], reason="joint")
            return self.step(case, router.whistle, ev, at)
        if a.status is AssignmentStatus.OPEN:
            return self.step(case, router.claim, TicketClaimed(**ids), at)
        return self.step(case, router.resolve, TicketResolved(**ids, note="done"), at)


@pytest.fixture(scope="module")
def simulated() -> Simulation:
    sim = Simulation(seed=12)
    for n in range(CASES):
        sim.one(n)
    return sim


async def write(sim: Simulation, url: str) -> None:
    """The rows the dispatcher's repository writes for these cases and events."""
    db = Database(url)
    last: dict[str, datetime] = {}
    for case_id, at, _ in sim.events:
        last[case_id] = max(at, last.get(case_id, at))
    case_rows, assignment_rows = [], []
    for case_id, (case, reported) in sim.cases.items():
        case_rows.append({**_new_case_row(case, reported, sim.j), "updated_at": last[case_id]})
        assignment_rows += [
            {"case_id": case_id, "seq": i, **_assignment_row(a)} for i, a in enumerate(case.assignments, 1)
        ]
    ordered = sorted(enumerate(sim.events), key=lambda e: (e[1][1], e[0]))
    history_rows = [
        row
        for _, (case_id, at, e) in ordered
        for row in _history_rows([(case_id, Envelope.wrap(e, source="/dispatcher", time=at))], at)
    ]
    try:
        async with db.transaction() as s:
            await insert_rows(s, cases, case_rows)
            await insert_rows(s, assignments, assignment_rows)
            for i in range(0, len(history_rows), 5000):
                await insert_rows(s, history, history_rows[i : i + 5000])
        async with db.transaction() as s:  # the planner's statistics, as autovacuum keeps them
            await s.execute(text("ANALYZE"))
    finally:
        await db.dispose()


# -- the figures again, from the events alone -------------------------------------------------


def expected(sim: Simulation, since: datetime, until: datetime, **only: str) -> dict[str, Any]:
    def inside(t: datetime | None) -> bool:
        return t is not None and since <= t < until

    case_of = {cid: c for cid, (c, _) in sim.cases.items()}
    reported_at = {cid: t for cid, (_, t) in sim.cases.items()}
    given: dict[str, dict[str, Any]] = {}
    by_case: dict[str, list[dict[str, Any]]] = {}
    for cid, at, e in sim.events:
        if isinstance(e, CaseAssigned):
            a = {"id": e.assignment_id, "case": cid, "unit": e.unit_id, "tier": e.tier.value, "at": at}
            a |= {"response_due": e.response_due, "resolution_due": e.resolution_due}
            a |= {"claimed": None, "resolved": None, "ended": None}
            given[e.assignment_id] = a
            by_case.setdefault(cid, []).append(a)
        elif isinstance(e, CaseClaimed):
            given[e.assignment_id]["claimed"] = at
        elif isinstance(e, CaseUnclaimed):
            given[e.assignment_id]["claimed"] = None
        elif isinstance(e, CaseHandlerReported):
            given[e.assignment_id]["resolved"] = at
        elif isinstance(e, CaseUnassigned):
            given[e.assignment_id]["ended"] = at

    def case_ok(cid: str) -> bool:
        c = case_of[cid]
        street = sim.j.community(sim.j.grid(c.grid_id).community_id).street_id
        if any(only.get(k) not in (None, v) for k, v in (("street", street), ("category", c.category))):
            return False
        return any(
            only.get("unit") in (None, a["unit"]) and only.get("tier") in (None, a["tier"]) for a in by_case[cid]
        )

    chosen = {cid for cid in case_of if case_ok(cid)}
    mine = [a for a in given.values() if a["case"] in chosen]
    mine = [a for a in mine if only.get("unit") in (None, a["unit"]) and only.get("tier") in (None, a["tier"])]
    events = [(cid, at, e) for cid, at, e in sim.events if cid in chosen]
    seen = [(cid, at, e) for cid, at, e in events if inside(at)]

    def clock(name: str) -> dict[str, Any]:
        met = missed = 0
        for a in mine:
            due, done = a[f"{name}_due"], a["claimed" if name == "response" else "resolved"]
            if done is not None and done <= due:
                met += inside(done)
            elif due <= NOW and (a["ended"] is None or a["ended"] >= due):
                missed += inside(due)
        return {"met": met, "counted": met + missed, "rate": ratio(met, met + missed)}

    closes = [(cid, at, e) for cid, at, e in seen if isinstance(e, CaseClosed)]
    reasons = Counter(e.reason for _, _, e in closes)
    reopened = sum(isinstance(e, CaseReopened) for _, _, e in seen)
    order = {id(e): i for i, (_, _, e) in enumerate(sim.events)}
    breach_idx: dict[str, int] = {}
    for cid, _, e in events:
        if isinstance(e, CaseSlaBreached):
            breach_idx.setdefault(cid, order[id(e)])
    answered = [(cid, e) for cid, _, e in closes if e.reason != "cancelled"]
    on_time = sum(1 for cid, e in answered if breach_idx.get(cid, math.inf) > order[id(e)])
    resolutions = [(cid, at, e) for cid, at, e in seen if isinstance(e, CaseResolved)]
    claimed = [a for a in mine if inside(a["claimed"])]
    reported = [cid for cid in chosen if inside(reported_at[cid])]
    breaches = [e for _, _, e in seen if isinstance(e, CaseSlaBreached) and e.repeat == 0]
    moved = Counter(e.reason.value for _, _, e in seen if isinstance(e, CaseEscalated))
    by_category: dict[str, dict[str, int]] = {}
    for cid in reported:
        by_category.setdefault(case_of[cid].category, {"reported": 0, "resolved": 0})["reported"] += 1
    for cid, _, _ in resolutions:
        by_category.setdefault(case_of[cid].category, {"reported": 0, "resolved": 0})["resolved"] += 1
    by_tier = {t: {"assigned": 0, "resolved": 0} for t in ("grid", "community", "street", "bureau")}
    for a in mine:
        by_tier[a["tier"]]["assigned"] += inside(a["at"])
    for _, _, e in resolutions:
        by_tier[given[e.assignment_id]["tier"]]["resolved"] += 1

    per_case: dict[str, list[tuple[datetime, Event]]] = {}
    for cid, at, e in events:
        per_case.setdefault(cid, []).append((at, e))

    def closure(tiers: tuple[str, ...]) -> dict[str, Any]:
        started = kept = 0
        for cid in reported:
            before = [e for at, e in per_case[cid] if at < until]
            if by_case[cid][0]["tier"] not in tiers or any(
                isinstance(e, CaseClosed) and e.reason == "cancelled" for e in before
            ):
                continue
            started += 1
            stayed = all(a["tier"] in tiers for a in by_case[cid] if a["at"] < until)
            kept += stayed and any(isinstance(e, CaseResolved) for e in before)
        return {"kept": kept, "started": started, "rate": ratio(kept, started)}

    def spread(values: list[float]) -> dict[str, Any]:
        values = sorted(values)
        return {
            "count": len(values),
            "average_seconds": round(sum(values) / len(values), 3) if values else None,
            "p90_seconds": values[math.ceil(len(values) * 9 / 10) - 1] if values else None,
        }

    return {
        "reported": len(reported),
        "assigned": sum(inside(a["at"]) for a in mine),
        "claimed": len(claimed),
        "resolved": len(resolutions),
        "closed": len(closes),
        "closed_by_reason": {r: reasons.get(r, 0) for r in ("satisfied", "no_answer", "cancelled")},
        "response": clock("response"),
        "resolution": clock("resolution"),
        "satisfaction": {
            "satisfied": reasons["satisfied"],
            "unsatisfied": reopened,
            "no_answer": reasons["no_answer"],
            "rate": ratio(reasons["satisfied"], reasons["satisfied"] + reopened),
        },
        "on_time_closure": {"on_time": on_time, "closed": len(answered), "rate": ratio(on_time, len(answered))},
        "time_to_claim": spread([(a["claimed"] - a["at"]).total_seconds() for a in claimed]),
        "time_to_resolve": spread([(at - reported_at[cid]).total_seconds() for cid, at, _ in resolutions]),
        "by_category": dict(sorted(by_category.items())),
        "by_tier": by_tier,
        "escalations": {
            "response_breach": sum(not b.supervised and b.clock.value == "response" for b in breaches),
            "resolution_breach": sum(not b.supervised and b.clock.value == "resolution" for b in breaches),
            "handler": moved["handler"],
            "returned": moved["returned"],
            "reassigned": moved["reassigned"],
            "whistled": sum(isinstance(e, CaseWhistled) for _, _, e in seen),
            "supervised": sum(b.supervised for b in breaches),
        },
        "grid_closure": closure(("grid",)),
        "community_closure": closure(("grid", "community")),
    }


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def client(
    request: pytest.FixtureRequest, simulated: Simulation, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the seeded history, on PostgreSQL and on SQLite (embedded mode's database,
    whose time arithmetic is functions of ours: services/storage/clocksql.py)."""
    url = pg_url
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('figures') / 'dispatcher.db'}"
        await asyncio.to_thread(upgrade, url, "dispatcher")  # alembic runs a loop of its own
    await write(simulated, url)
    db = Database(url)
    app = FastAPI()
    edge.install(app, {})
    app.state.authenticator = Authenticator(TEST_SECRET, frozen_clock(NOW), units=[u.id for u in simulated.j.units])
    app.include_router(api.figures_router(db, frozen_clock(NOW), simulated.j, simulated.policy))
    app.include_router(api.router(db, frozen_clock(NOW), simulated.j, simulated.policy))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as c:
        c.headers.update(bearer(app.state.authenticator.issue("ops", ttl=timedelta(hours=1))))
        yield c
    await db.dispose()


WINDOWS = [
    (START, NOW, {}),
    (START + timedelta(days=4, minutes=17, seconds=5), START + timedelta(days=9, hours=5, minutes=41), {}),
    (START + timedelta(days=8, minutes=3), START + timedelta(days=13, hours=2, minutes=9), {"street": "S2"}),
    (START + timedelta(days=5), START + timedelta(days=12), {}),
    (START + timedelta(days=3), START + timedelta(days=17), {"tier": "grid"}),
    (START, NOW, {"tier": "bureau"}),
    (START, NOW, {"street": "S1"}),
    (START + timedelta(days=2), START + timedelta(days=9), {"unit": "U-G11"}),
    (START, NOW, {"category": "garbage"}),
]


@pytest.mark.parametrize(("since", "until", "only"), WINDOWS)
async def test_every_figure_matches_the_events(simulated, client, since, until, only):
    zone = "+08:00"
    query = {"since": since.isoformat().replace("+00:00", "Z"), "until": until.isoformat(), **only}
    r = await client.get("/v1/ops/stats", params=query)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got.pop("since").endswith(zone) and got.pop("until").endswith(zone)  # the policy's zone
    assert got == expected(simulated, since, until, **only)


def test_the_history_holds_every_kind_of_outcome(simulated):
    kinds = Counter(type(e).__name__ for _, _, e in simulated.events)
    closes = Counter(e.reason for _, _, e in simulated.events if isinstance(e, CaseClosed))
    moved = Counter(e.reason.value for _, _, e in simulated.events if isinstance(e, CaseEscalated))
    assert kinds["CaseWhistled"] and kinds["CaseReopened"] and kinds["CaseReturned"]
    assert all(closes[r] for r in ("satisfied", "no_answer", "cancelled"))
    assert all(moved[r] for r in ("breach", "handler", "returned"))
    assert any(e.supervised for _, _, e in simulated.events if isinstance(e, CaseSlaBreached))


async def test_the_breach_history_lists_every_first_breach_with_what_followed(simulated, client):
    since, until = START + timedelta(days=6), START + timedelta(days=7)
    query = {"state": "all", "since": since.isoformat(), "until": until.isoformat(), "limit": 1000}
    r = await client.get("/v1/ops/breaches", params=query)
    assert r.status_code == 200, r.text
    got = {(b["assignment_id"], b["clock"]): (b["outcome"], b["escalated_to_unit_id"]) for b in r.json()}
    want = {}
    for i, (_, at, e) in enumerate(simulated.events):
        if isinstance(e, CaseSlaBreached) and e.repeat == 0 and since <= at < until:
            after = simulated.events[i + 1][2]
            to = after.to_unit_id if isinstance(after, CaseEscalated) else None
            want[(e.assignment_id, e.clock.value)] = ("supervised" if e.supervised else "escalated", to)
    assert len(got) == len(r.json()) and 0 < len(want) < 1000
    assert got == want


@pytest.mark.parametrize("only", [{}, {"tier": "community"}, {"street": "S2"}])
async def test_the_daily_counts_match_the_events_per_local_day(simulated, client, only):
    since, until = START + timedelta(days=4, hours=7), START + timedelta(days=11, hours=3)
    query = {"since": since.isoformat(), "until": until.isoformat(), **only}
    r = await client.get("/v1/ops/stats/daily", params=query)
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    zone = simulated.policy.calendar.zone
    local = [since.astimezone(zone).date() + timedelta(days=n) for n in range(len(days))]
    assert [d["day"] for d in days] == [d.isoformat() for d in local]
    assert local[-1] == until.astimezone(zone).date()
    want = {d: dict.fromkeys(("opened", "escalated", "resolved", "closed", "breached"), 0) for d in local}
    chosen = set(chosen_cases(simulated, **only))
    for cid, (_, at) in simulated.cases.items():
        if cid in chosen and since <= at < until:
            want[at.astimezone(zone).date()]["opened"] += 1
    kinds = {CaseEscalated: "escalated", CaseWhistled: "escalated", CaseResolved: "resolved", CaseClosed: "closed"}
    for cid, at, e in simulated.events:
        kind = "breached" if isinstance(e, CaseSlaBreached) and e.repeat == 0 else kinds.get(type(e))
        if kind and cid in chosen and since <= at < until:
            want[at.astimezone(zone).date()][kind] += 1
    assert days == [{"day": d.isoformat(), **counts} for d, counts in want.items()]
    total = (await client.get("/v1/ops/stats", params=query)).json()
    assert sum(d["opened"] for d in days) == total["reported"]
    assert sum(d["resolved"] for d in days) == total["resolved"]


def chosen_cases(sim: Simulation, **only: str) -> list[str]:
    out = []
    for cid, (case, _) in sim.cases.items():
        street = sim.j.community(sim.j.grid(case.grid_id).community_id).street_id
        if only.get("street") not in (None, street):
            continue
        if only.get("tier") and not any(a.tier.value == only["tier"] for a in case.assignments):
            continue
        out.append(cid)
    return out


@pytest.mark.parametrize("kind", ["grid", "department", "community"])
async def test_scorecards_agree_with_each_units_figures_and_rank_by_the_documented_score(simulated, client, kind):
    since, until = START + timedelta(days=3), START + timedelta(days=15)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    r = await client.get("/v1/ops/scorecards", params={**window, "kind": kind})
    assert r.status_code == 200, r.text
    units = r.json()["units"]
    assert {u["unit_id"] for u in units} == {u.id for u in simulated.j.units if u.kind.value == kind}
    weights = simulated.policy.scorecard
    for u in units:
        want = expected(simulated, since, until, unit=u["unit_id"])
        assert (u["assigned"], u["response_met"], u["response_counted"]) == (
            want["assigned"],
            want["response"]["met"],
            want["response"]["counted"],
        )
        assert (u["resolution_met"], u["resolution_counted"]) == (
            want["resolution"]["met"],
            want["resolution"]["counted"],
        )
        visits = (await client.get("/v1/ops/satisfaction", params={**window, "unit": u["unit_id"]})).json()
        assert (u["satisfied"], u["unsatisfied"], u["no_answer"]) == (
            visits["satisfied"],
            visits["unsatisfied"],
            visits["no_answer"],
        )
        made = Counter()  # what the unit did in the window, from its events
        for _, at, e in simulated.events:
            if since <= at < until:
                if isinstance(e, (CaseResolved, CaseReturned)) and e.unit_id == u["unit_id"]:
                    made["resolved" if isinstance(e, CaseResolved) else "returned"] += 1
                elif isinstance(e, CaseSlaBreached) and e.unit_id == u["unit_id"] and e.repeat == 0:
                    made["breaches"] += 1
                elif isinstance(e, CaseEscalated) and e.from_unit_id == u["unit_id"] and e.reason.value == "handler":
                    made["escalated"] += 1
        assert {k: u[k] for k in ("resolved", "returned", "breaches", "escalated")} == {
            k: made[k] for k in ("resolved", "returned", "breaches", "escalated")
        }
        rates = [(weights.response, u["response_rate"]), (weights.resolution, u["resolution_rate"])]
        rates.append((weights.satisfaction, u["satisfaction_rate"]))
        rated = [(w, v) for w, v in rates if v is not None]
        score = round(100 * sum(w * v for w, v in rated) / sum(w for w, _ in rated), 2) if rated else None
        assert u["score"] == (score if u["assigned"] >= weights.min_assignments else None)
    ranked = [u["score"] for u in units if u["rank"] is not None]
    assert ranked  # the seeded history gives every kind enough work to rank
    assert ranked == sorted(ranked, reverse=True) and [u["rank"] for u in units][: len(ranked)] == list(
        range(1, len(ranked) + 1)
    )
    csv_answer = await client.get("/v1/ops/scorecards", params={**window, "kind": kind}, headers={"Accept": "text/csv"})
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("rank,unit_id,unit_name,unit_name_zh,kind,score") and len(lines) == len(units) + 1
    assert [line.split(",")[1] for line in lines[1:]] == [u["unit_id"] for u in units]
