"""A year of a district (issue 21): seeds a year of cases into PostgreSQL through the tables the
services write, then measures, with the four services running as separate processes, the reads
people wait on; prints a table and writes bench/results/year-<timestamp>.json.

    .venv/bin/python -m bench.year [--cases 1000000] [--reuse] [--runs 30] [--explain] [--only WORDS ...]

How the year is seeded (said in the output too):

- The history is made by the dispatcher's own pure `Router`, driven by the figures test's
  generator (tests/integration/test_figures_exact.py `Simulation`: its category mix, priorities,
  delays, claims, resolutions, 上报, 退单, 吹哨, cancellations, satisfaction answers, breaches
  fired by its timers, supervision, reopenings), with one change: a case is acted on until it
  closes (at most 40 steps), not one to nine times, since a year-old case left half-handled would
  collect a supervision alert every few hours for months. Locations are the grid's centre with
  a few metres of jitter (the figures test puts every case on one point).
- Not every case is simulated. The last 15 days before "now" are simulated case by case (each
  case distinct, open ones included, with their pending SLA timers). The 350 days before them
  are a template of cases reported over 14 days, each simulated until it closes within 14 days
  (some 6% do not: they are dropped and counted, so the longest-running cases are under-
  represented before the last 15 days), replicated 25 times, each copy shifted by a
  whole number of fortnights (weekday and time of day kept, so the working-hours calendar still
  holds, public holidays aside) with fresh case and assignment ids: every row's internal timing
  stays consistent, and the pattern repeats every 14 days. Two processes simulate and write.
- Rows are written with COPY (asyncpg `copy_records_to_table`) into each service's own
  database, as each service writes them: the dispatcher's cases, assignments, history and
  timers (dispatcher/repository.py's row builders); departments' tickets (one per assignment,
  its status from how the assignment ended, claimer and resolver the unit's seeded handler);
  intake's reports, case views and timeline (intake/domain.py `view_change` over the events);
  the notifier's cases and notifications (notifier/domain.py `notices` over the events).
  The dispatcher's history, written case by case, is then put in time order on disk (CLUSTER),
  as a running district writes it.
- Left out, on purpose or for time: duplicate reports (each case has one report, no contact,
  channel `app`), ticket notes and evidence, adapters' and the notifier's deliveries, residents'
  notifications (no case has a follower), and notifications of template cases (the notifier's
  pruner deletes those older than 30 days: services/storage/pruning.py; the tail's are kept).
  Notification texts are short stand-ins, not rendered templates. Tickets carry no adapter
  deliveries; the dispatcher's timers are written for the tail's open cases only (the others
  have none).

`--reuse` runs the migrations first (as a deployment would), so a migration written since the
seed runs on the year's rows and the services find the schema they expect.

"Now" is the end of the seeded year: the services run from this module (`serve`) with a clock
that reads the wall clock shifted so that it started at the seed's end, so `--reuse` measures
the same year days later. Each read is timed from the client, one request at a time, after a
warm-up request; a read slower than a second is timed fewer times (5, 2 past 10 s, 1 past
30 s), and one that takes longer than the timeout (120 s) is reported as a timeout and not asked
again: the service, still busy with it, is restarted (its peak RSS noted) before the next read.
`--explain` then restarts the services with auto_explain on for the bench's databases only
(ALTER DATABASE ... SET, reset afterwards), asks each read once and keeps the three slowest
statements' EXPLAIN (ANALYZE, BUFFERS) plans from the server's log."""

import argparse
import asyncio
import hashlib
import importlib
import json
import math
import multiprocessing
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.procs import memory_mb

RESULTS = Path(__file__).parent / "results"
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX = "gridcall_year"
SERVICES = ("intake", "dispatcher", "departments", "notifier")
TAIL_DAYS = 15  # simulated case by case, up to now
TEMPLATE_DAYS = 14  # the template's span, and the step between its copies
COPIES = 25  # 25 x 14 = 350 days before the tail
TEMPLATE_HORIZON = timedelta(days=14)  # a template case must close within this (the tail's length, less a day)
NOTIFICATIONS_KEPT = timedelta(days=30)  # the notifier's retention (GRIDCALL_DELIVERY_RETENTION_DAYS)
TIMEOUT = 120.0
DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?=T\d)")


# -- the clock -------------------------------------------------------------------------------


class ShiftedClock:
    """The wall clock moved by a fixed amount: "now" is the seed's end when the bench starts."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def serve(service: str, port: int, offset_s: float) -> None:
    """`gridcall serve <service>` with the shifted clock (the CLI's own start-up, clock aside)."""
    from functools import partial

    from gridcall import cli
    from gridcall.app import build_app
    from gridcall.operators import load_settings

    cli.build_app = partial(build_app, clock=ShiftedClock(timedelta(seconds=offset_s)))  # type: ignore[assignment]
    settings = load_settings()
    cli._logging(settings, service)
    cli._serve(settings, [service], port)


# -- ids -------------------------------------------------------------------------------------


def case_id(copy: int, n: int) -> str:
    """A UUID-shaped case id: its first group names the copy (the tail's is 0xffff), the last the case."""
    return f"{copy:08x}-0000-4000-8000-{n:012x}"


def tracking_token(cid: str) -> str:
    return f"year-{cid}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # as intake/domain.py token_hash


TAIL_COPY = 0xFFFF


# -- simulation (in worker processes) ---------------------------------------------------------


# The columns each table is written with, in order: the services' own table definitions (so a
# column added by a migration is written too, or the seeding stops at a NOT NULL one it lacks),
# less autoincrement ids and columns with a server default. A copy of the template moves every
# timestamp column in time; `ids` are the columns holding the case id (renamed in a copy),
# `texts` JSON or text that may hold dates and ids, `hashed` the tracking token's hash.
@dataclass(frozen=True)
class Shape:
    table: str
    ids: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    hashed: str | None = None
    columns: tuple[str, ...] = ()
    shift: tuple[str, ...] = ()
    required: frozenset[str] = frozenset()

    def index(self, names: Iterable[str]) -> tuple[int, ...]:
        return tuple(self.columns.index(n) for n in names)

    def row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        if missing := self.required - values.keys():
            raise SystemExit(f"{self.table}: the seed has no value for NOT NULL {sorted(missing)} (a new column?)")
        return tuple(values.get(c) for c in self.columns)


def _shape(table: str, **given: Any) -> Shape:
    from departments import tables as departments
    from dispatcher import tables as dispatcher
    from intake import tables as intake
    from notifier import tables as notifier
    from services.storage.db import UtcDateTime

    found = {t.name: t for m in (dispatcher, departments, intake, notifier) for t in m.metadata.tables.values()}
    kept = [c for c in found[table].columns if c.server_default is None and not (c.primary_key and c.name == "id")]
    return Shape(
        table,
        **given,
        columns=tuple(c.name for c in kept),
        shift=tuple(c.name for c in kept if isinstance(c.type, UtcDateTime)),
        required=frozenset(c.name for c in kept if not c.nullable),
    )


SHAPES: dict[str, Shape] = {
    "dispatcher_cases": _shape("dispatcher_cases", ids=("case_id",)),
    "dispatcher_assignments": _shape("dispatcher_assignments", ids=("assignment_id", "case_id")),
    "dispatcher_history": _shape("dispatcher_history", ids=("case_id",), texts=("details",)),
    "dispatcher_timers": _shape("dispatcher_timers"),
    "departments_tickets": _shape(
        "departments_tickets", ids=("ticket_id", "case_id"), texts=("arrived_because", "handover_reason")
    ),
    "intake_reports": _shape("intake_reports", ids=("report_id", "case_id"), hashed="tracking_hash"),
    "intake_case_views": _shape("intake_case_views", ids=("case_id",)),
    "intake_timeline": _shape("intake_timeline", ids=("case_id",), texts=("details",)),
    "notifier_cases": _shape("notifier_cases", ids=("case_id",)),
    "notifier_notifications": _shape("notifier_notifications"),
}
DATABASE_OF = {name: name.split("_", 1)[0] for name in SHAPES}
Rows = dict[str, list[tuple[Any, ...]]]
# A worker's job: its random seed, the copy its case ids name, (case number, reported at) of its
# cases, now, whether they are template cases, and each unit's seeded handler.
Job = tuple[int, int, list[tuple[int, float]], float, bool, dict[str, tuple[str, str]]]


@dataclass
class Batch:
    """The rows of a batch of simulated cases, and how many were dropped (template cases
    still open at their horizon) and simulated."""

    rows: Rows = field(default_factory=lambda: {t: [] for t in SHAPES})
    cases: list[str] = field(default_factory=list)
    dropped: int = 0


def simulate(job: Job) -> Batch:
    """Simulate the cases `(n, reported)` of copy `copy` (a worker process's job)."""
    seed, copy, todo, horizon_ts, template, handlers = job
    # imported by name: the test module is the generator, not code this package type-checks
    generator = importlib.import_module("tests.integration.test_figures_exact")
    sim = generator.Simulation(seed)
    writer = Writer(sim, handlers)
    batch = Batch()
    for n, reported_ts in todo:
        reported = datetime.fromtimestamp(reported_ts, UTC)
        horizon = reported + TEMPLATE_HORIZON if template else datetime.fromtimestamp(horizon_ts, UTC)
        cid = case_id(copy, n)
        case = writer.one(cid, reported, horizon)
        if template and not case.closed:
            batch.dropped += 1
            continue
        writer.rows(case, reported, horizon, batch.rows, timers_pending=not template, notify=not template)
        batch.cases.append(cid)
    return batch


class Writer:
    """One case at a time through the figures test's generator, and its rows for every service."""

    def __init__(self, sim: Any, handlers: dict[str, tuple[str, str]]) -> None:
        from notifier.domain import Names

        self.sim = sim
        self.handlers = handlers  # unit id -> (staff id, name) of its seeded handler
        self.names = Names(sim.j, sim.policy)
        self.current = ""
        self.k = 0
        sim.new_id = self.new_id

    def new_id(self) -> str:
        self.k += 1
        return f"{self.current}.{self.k}"

    def one(self, cid: str, reported: datetime, horizon: datetime) -> Any:
        from dispatcher.domain import DispatchError
        from services.district.events import CaseReported, Location, Priority

        sim, r = self.sim, self.sim.rng
        self.current, self.k = cid, 0
        sim.events = []
        grid = r.choice(sim.j.grids)
        centre = grid.shape.centroid
        where = Location(
            lat=round(centre.y + r.uniform(-4e-4, 4e-4), 6), lon=round(centre.x + r.uniform(-4e-4, 4e-4), 6)
        )
        report = CaseReported(
            case_id=cid,
            category=r.choice([c.code for c in sim.policy.categories]),
            description=f"Seeded case {cid[-6:]}: " + r.choice(DESCRIPTIONS),
            location=where,
            grid_id=grid.id,
            priority=r.choice([Priority.NORMAL, Priority.NORMAL, Priority.URGENT]),
        )
        case = sim.step(None, sim.router.report, report, reported)
        at = reported
        for _ in range(40):
            at += sim.delay()
            case = sim.run_timers(case, min(at, horizon))
            if at >= horizon or case.closed or not (case.resolved or case.active):
                break
            try:
                case = sim.act(case, at)
            except DispatchError:
                pass
        return sim.run_timers(case, horizon)

    def rows(
        self, case: Any, reported: datetime, now: datetime, out: Rows, *, timers_pending: bool, notify: bool
    ) -> None:
        from dispatcher.domain import AssignmentStatus, timers
        from dispatcher.repository import _assignment_row, _new_case_row
        from intake.domain import view_change
        from notifier.domain import CaseFacts, notices
        from services.district.events import CaseAssigned, CaseEscalated, CaseUnassigned, Role

        sim, cid = self.sim, case.case_id
        history = SHAPES["dispatcher_history"]
        events: list[tuple[str, datetime, Any]] = sim.events
        last = max((at for _, at, _ in events), default=reported)
        row = {**_new_case_row(case, reported, sim.j), "updated_at": last, "details": json.dumps(case.details)}
        out["dispatcher_cases"].append(SHAPES["dispatcher_cases"].row(row))
        for seq, a in enumerate(case.assignments):
            row = {"case_id": cid, "seq": seq, **_assignment_row(a)}
            out["dispatcher_assignments"].append(SHAPES["dispatcher_assignments"].row(row))
        for _, at, e in events:
            # what dispatcher/repository.py _history_rows makes of the event's envelope
            details = {k: v for k, v in e.model_dump(mode="json").items() if k != "case_id"}
            kind = e.type.removeprefix("gridcall.")
            said = json.dumps(details, ensure_ascii=False)
            out["dispatcher_history"].append(history.row({"case_id": cid, "at": at, "type": kind, "details": said}))
        if timers_pending:
            for t in timers(case, sim.policy):
                timer = {"case_id": cid, "assignment_id": t.assignment_id, "kind": t.kind.value, "due_at": t.due_at}
                out["dispatcher_timers"].append(SHAPES["dispatcher_timers"].row(timer))

        # departments: a ticket per assignment, its end as departments records it
        arrived: dict[str, str] = {}
        handover: dict[str, tuple[str, str, datetime]] = {}
        escalated_by = ""
        for _, at, e in events:
            if isinstance(e, CaseAssigned):
                arrived[e.assignment_id] = e.reason
            elif isinstance(e, CaseEscalated):
                escalated_by = e.reason.value
            elif isinstance(e, CaseUnassigned):
                handover[e.assignment_id] = (e.reason, escalated_by, at)
        for a in case.assignments:
            status = a.status.value
            closed_at = None
            why = None
            if a.status is AssignmentStatus.ENDED:
                reason, cause, closed_at = handover.get(a.assignment_id, (a.end_reason or "", "", reported))
                status = TICKET_END.get(reason, "withdrawn")
                if reason == "escalated" and cause == "handler":
                    status = "escalated"
                why = reason
            who = self.handlers.get(a.unit_id, (None, None))
            claimed = a.claimed_at is not None
            ticket = {
                "ticket_id": a.assignment_id,
                "case_id": cid,
                "unit_id": a.unit_id,
                "tier": a.tier.value,
                "role": a.role.value,
                "priority": case.priority.value,
                "category": case.category,
                "description": case.description,
                "details": json.dumps(case.details),
                "reporters": 1,
                "grid_id": case.grid_id,
                "lat": case.location.lat,
                "lon": case.location.lon,
                "status": status,
                "claimed_by": who[1] if claimed else None,
                "claimed_by_id": who[0] if claimed else None,
                "resolved_by": who[1] if a.resolved_at else None,
                "resolved_by_id": who[0] if a.resolved_at else None,
                "note": a.note,
                "response_due": a.response_due,
                "resolution_due": a.resolution_due,
                "due_at": a.response_due if a.status is AssignmentStatus.OPEN else a.resolution_due,
                "arrived_because": arrived.get(a.assignment_id) or None,
                "handover_reason": why,
                "created_at": a.assigned_at,
                "claimed_at": a.claimed_at,
                "resolved_at": a.resolved_at,
                "closed_at": closed_at,
            }
            out["departments_tickets"].append(SHAPES["departments_tickets"].row(ticket))

        # intake: the report, the resident's view and its public timeline
        loc = case.location
        report = {
            "report_id": f"r{cid}",
            "case_id": cid,
            "linked": False,
            "category": case.category,
            "description": case.description,
            "lat": loc.lat,
            "lon": loc.lon,
            "grid_id": case.grid_id,
            "details": json.dumps(case.details),
            "anonymous": False,
            "priority": case.priority.value,
            "channel": "app",
            "household_flag": None,
            "contact": None,
            "tracking_hash": token_hash(tracking_token(cid)),
            "created_at": reported,
        }
        out["intake_reports"].append(SHAPES["intake_reports"].row(report))
        timeline = SHAPES["intake_timeline"]
        view: dict[str, Any] = dict.fromkeys(SHAPES["intake_case_views"].columns)
        view.update(
            case_id=cid,
            status="received",
            category=case.category,
            lat=loc.lat,
            lon=loc.lon,
            reporters=1,
            created_at=reported,
            updated_at=reported,
        )
        said = json.dumps({"grid_id": case.grid_id})
        out["intake_timeline"].append(
            timeline.row({"case_id": cid, "at": reported, "type": "received", "details": said})
        )
        for _, at, e in events:
            change = view_change(e)
            if change is None:
                continue
            view.update(change.columns, **dict.fromkeys(change.stamped, at), updated_at=at)
            if change.status is not None:
                view["status"] = change.status.value
            if getattr(e, "reason", None) == "satisfied":
                view["satisfaction_answered_at"] = at
            if change.timeline_type:
                said = json.dumps(change.details, ensure_ascii=False, default=str)
                entry = {"case_id": cid, "at": at, "type": change.timeline_type, "details": said}
                out["intake_timeline"].append(timeline.row(entry))
        out["intake_case_views"].append(SHAPES["intake_case_views"].row(view))

        # notifier: what it keeps of the case, and what it told units and ops (the last 30 days)
        lead = None
        facts = CaseFacts(cid, case.category, case.grid_id, case.priority, None)
        k = 0
        for _, at, e in events:
            if isinstance(e, CaseAssigned) and e.role is Role.LEAD:
                lead = e.unit_id
                facts = CaseFacts(cid, case.category, case.grid_id, case.priority, lead)
            if not notify or at < now - NOTIFICATIONS_KEPT:
                continue
            try:
                told = notices(e, facts, self.names, sim.policy, at)
            except Exception:  # noqa: BLE001 - an event the notifier words otherwise: not seeded
                continue
            for notice in told:
                if notice.to == "residents" or notice.to.startswith("follower:"):
                    continue  # no seeded case has a follower
                k += 1
                kind = notice.facts.kind.value
                subject = f"[{kind}] {case.category} {case.grid_id} {cid[-12:]}"
                message = f"{subject}: {case.description[:60]} (at {at:%Y-%m-%d %H:%M} UTC, {notice.to})"
                told_row = {
                    "key": f"{cid}/{k}",
                    "case_id": cid,
                    "audience": notice.facts.audience.value,
                    "recipient": notice.to,
                    "kind": kind,
                    "language": "zh-CN",
                    "subject": subject,
                    "message": message,
                    "created_at": at,
                }
                out["notifier_notifications"].append(SHAPES["notifier_notifications"].row(told_row))
        kept = {"case_id": cid, "category": case.category, "grid_id": case.grid_id, "priority": case.priority.value}
        out["notifier_cases"].append(SHAPES["notifier_cases"].row({**kept, "lead_unit_id": lead}))


TICKET_END = {"returned": "returned", "whistled": "whistled", "reassigned": "reassigned", "cancelled": "withdrawn"}
DESCRIPTIONS = (
    "Bags of rubbish piled in the stairwell of building 3",
    "The streetlight at the corner has been out for a week",
    "Water leaking from the ceiling of the corridor",
    "Loud music every night after eleven",
    "A pothole on the road by the school gate",
    "The lift stops between floors",
)


# -- copies of the template ------------------------------------------------------------------


class Copier:
    """The template's rows for copy `copy`: times moved by `copy` fortnights, ids renamed."""

    def __init__(self, template: Rows, template_ids: Sequence[str]) -> None:
        self.rows = template
        self.ids = template_ids
        self.plan = {name: self._plan(SHAPES[name], rows) for name, rows in template.items()}

    @staticmethod
    def _plan(shape: Shape, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Each row with its text columns split at their dates, so a copy only swaps dates."""
        texts = shape.index(shape.texts)
        if not texts:
            return rows
        out = []
        for row in rows:
            r = list(row)
            for i in texts:
                if isinstance(r[i], str) and DATE.search(r[i]):
                    r[i] = tuple(DATE.split(r[i]))
            out.append(tuple(r))
        return out

    def copy(self, name: str, copy: int) -> Iterator[tuple[Any, ...]]:
        shape = SHAPES[name]
        delta = timedelta(days=TEMPLATE_DAYS * copy)
        shift, ids, texts = shape.index(shape.shift), shape.index(shape.ids), shape.index(shape.texts)
        hashed = shape.columns.index(shape.hashed) if shape.hashed else None
        dates: dict[str, str] = {}
        old, new = f"{0:08x}-", f"{copy:08x}-"

        def moved(d: str) -> str:
            if d not in dates:
                dates[d] = (date.fromisoformat(d) + delta).isoformat()
            return dates[d]

        for row in self.plan[name]:
            r = list(row)
            for i in shift:
                if r[i] is not None:
                    r[i] = r[i] + delta
            for i in ids:
                r[i] = r[i].replace(old, new, 1)
            for i in texts:
                v = r[i]
                if isinstance(v, tuple):
                    r[i] = "".join([p if j % 2 == 0 else moved(p) for j, p in enumerate(v)]).replace(old, new)
                elif isinstance(v, str):
                    r[i] = v.replace(old, new)
            if hashed is not None:
                r[hashed] = token_hash(tracking_token(r[shape.columns.index("case_id")]))
            yield tuple(r)


# -- databases -------------------------------------------------------------------------------


def dsn(service: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + f"/{PREFIX}_{service}"


def sqlalchemy_url(service: str) -> str:
    return dsn(service).replace("postgresql://", "postgresql+asyncpg://")


async def seeded(cases: int) -> dict[str, Any] | None:
    """The seed's record, if the databases hold a seed of `cases` cases."""
    try:
        conn = await asyncpg.connect(dsn("dispatcher"))
    except (asyncpg.InvalidCatalogNameError, OSError):
        return None
    try:
        row = await conn.fetchrow("SELECT * FROM bench_year_seed WHERE cases = $1", cases)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return dict(row) if row else None


async def fresh_databases() -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        for s in SERVICES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PREFIX}_{s}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{PREFIX}_{s}"')
    finally:
        await conn.close()


def migrate() -> None:
    from gridcall.migrate import upgrade

    for s in SERVICES:
        upgrade(sqlalchemy_url(s), s)


async def enrolled(clock: Any, secret: str) -> tuple[Any, Any, dict[str, tuple[str, str]]]:
    """A handler in every unit, supervisors of C1 and S1 (made if missing, dated by the
    shifted clock); the token factories, and each unit's handler (staff id, name)."""
    from departments.usecases.staff import StaffRole
    from tests.support.staff import enrol

    url = sqlalchemy_url("departments")
    handler = await enrol(url, secret, clock=clock)
    supervisor = await enrol(url, secret, ["U-C1", "U-S1"], StaffRole.SUPERVISOR, clock=clock)
    conn = await asyncpg.connect(dsn("departments"))
    try:
        rows = await conn.fetch("SELECT unit_id, staff_id, name FROM departments_staff WHERE role = 'handler'")
    finally:
        await conn.close()
    return handler, supervisor, {r["unit_id"]: (r["staff_id"], r["name"]) for r in rows}


class Loader:
    """COPY into each service's database, one connection each."""

    def __init__(self) -> None:
        self.conns: dict[str, asyncpg.Connection] = {}
        self.counts: dict[str, int] = dict.fromkeys(SHAPES, 0)

    async def open(self) -> None:
        for s in SERVICES:
            self.conns[s] = await asyncpg.connect(dsn(s))
            await self.conns[s].execute("SET synchronous_commit = off")

    async def write(self, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if rows:
            conn = self.conns[DATABASE_OF[name]]
            await conn.copy_records_to_table(name, records=rows, columns=list(SHAPES[name].columns))
            self.counts[name] += len(rows)

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()


async def _load(tables: Iterable[tuple[str, Iterable[tuple[Any, ...]]]]) -> dict[str, int]:
    loader = Loader()
    await loader.open()
    try:
        for name, rows in tables:
            await loader.write(name, rows)
    finally:
        await loader.close()
    return loader.counts


def simulate_and_write(job: Job) -> tuple[int, dict[str, int]]:
    """A worker's tail job: simulate its cases, COPY their rows itself."""
    batch = simulate(job)
    return len(batch.cases), asyncio.run(_load(batch.rows.items()))


COPIER: "Copier | None" = None  # the template, inherited by the forked workers that write its copies


def write_copy(copy: int) -> dict[str, int]:
    assert COPIER is not None
    copier = COPIER
    return asyncio.run(_load((name, copier.copy(name, copy)) for name in SHAPES))


def plan_of(cases: int, now: datetime, seed: int = 21) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(template cases, tail cases, template size): when each is reported."""
    rng = random.Random(seed)
    template_n = math.ceil(cases * (COPIES * TEMPLATE_DAYS / 365) / COPIES)
    tail_n = max(0, cases - template_n * COPIES)
    start = now - timedelta(days=365)
    tail_start = now - timedelta(days=TAIL_DAYS)
    span, tail_span = TEMPLATE_DAYS * 86400, TAIL_DAYS * 86400
    # a few more template cases than needed: those still open at their horizon are dropped
    template = sorted((n, start.timestamp() + rng.uniform(0, span)) for n in range(int(template_n * 1.08) + 20))
    tail = [(n, tail_start.timestamp() + rng.uniform(0, tail_span)) for n in range(tail_n)]
    tail.sort(key=lambda t: t[1])
    return template, tail, template_n


def _jobs(
    todo: list[tuple[int, float]], copy: int, now: datetime, template: bool, handlers: dict[str, tuple[str, str]]
) -> list[Job]:
    size = 1000
    return [
        ((copy * 7919 + i) & 0xFFFFFFF, copy, todo[i : i + size], now.timestamp(), template, handlers)
        for i in range(0, len(todo), size)
    ]


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def seed(cases: int, now: datetime, handlers: dict[str, tuple[str, str]], workers: int) -> dict[str, Any]:
    global COPIER
    started = time.monotonic()
    template_plan, tail_plan, template_n = plan_of(cases, now)
    counts: dict[str, int] = dict.fromkeys(SHAPES, 0)
    template = Batch()
    simulated = dropped = 0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for b in pool.imap(simulate, _jobs(template_plan, 0, now, True, handlers)):
            dropped += b.dropped
            simulated += len(b.cases) + b.dropped
            for name in SHAPES:
                template.rows[name] += b.rows[name]
            template.cases += b.cases
            if len(template.cases) >= template_n:
                pool.terminate()
                break
    keep = template.cases[:template_n]
    if len(keep) < template_n:
        raise SystemExit(f"only {len(keep)} of {template_n} template cases closed within their horizon")
    cut = set(keep)
    for name, rows in template.rows.items():
        template.rows[name] = [r for r in rows if _case_of(name, r) in cut]
    print(
        f"  template: {template_n} cases ({simulated} simulated, {dropped} still open after "
        f"{TEMPLATE_HORIZON.days} days dropped) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    COPIER = Copier(template.rows, keep)
    del template
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, written in enumerate(pool.imap_unordered(write_copy, range(COPIES)), 1):
            _add(counts, written)
            if i % 5 == 0 or i == COPIES:
                print(f"  {i}/{COPIES} copies written ({time.monotonic() - started:.0f} s)", flush=True)
    COPIER = None
    tail_cases = 0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for n, written in pool.imap_unordered(simulate_and_write, _jobs(tail_plan, TAIL_COPY, now, False, handlers)):
            tail_cases += n
            _add(counts, written)
    print(f"  tail: {tail_cases} cases of the last {TAIL_DAYS} days ({time.monotonic() - started:.0f} s)", flush=True)
    written_s = time.monotonic() - started
    asyncio.run(vacuum())
    total = time.monotonic() - started
    how = (
        f"{template_n} template cases (figures-test generator, acted on until closed; {dropped} of {simulated} "
        f"dropped as still open after {TEMPLATE_HORIZON.days} days) reported over {TEMPLATE_DAYS} days, copied "
        f"{COPIES} times at {TEMPLATE_DAYS}-day steps over the first {COPIES * TEMPLATE_DAYS} days with new ids; "
        f"{tail_cases} distinct simulated cases over the last {TAIL_DAYS} days; COPY per table, 2 processes"
    )
    return {
        "cases": template_n * COPIES + tail_cases,
        "template_cases": template_n,
        "tail_cases": tail_cases,
        "rows": counts,
        "seconds_written": round(written_s, 1),
        "seconds_total": round(total, 1),
        "how": how,
    }


def _case_of(name: str, row: tuple[Any, ...]) -> str:
    return str(row[SHAPES[name].columns.index("case_id")])


# Tables a running district fills in time order, which the seed writes case by case; put back in
# time order (a BRIN index over rows out of order reads several times the rows a window holds).
IN_TIME_ORDER = {"dispatcher": ("dispatcher_history", "at")}


async def vacuum() -> None:
    for service, (table, column) in IN_TIME_ORDER.items():
        conn = await asyncpg.connect(dsn(service))
        try:
            await conn.execute(f"CREATE INDEX bench_in_time_order ON {table} ({column})")
            await conn.execute(f"CLUSTER {table} USING bench_in_time_order")
            await conn.execute("DROP INDEX bench_in_time_order")
        finally:
            await conn.close()
    for s in SERVICES:
        conn = await asyncpg.connect(dsn(s))
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()


async def record_seed(cases: int, now: datetime, figures: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dsn("dispatcher"))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_year_seed (cases integer PRIMARY KEY, now timestamptz NOT NULL, "
            "seeded_at timestamptz NOT NULL, figures jsonb NOT NULL)"
        )
        await conn.execute("DELETE FROM bench_year_seed")
        await conn.execute("INSERT INTO bench_year_seed VALUES ($1, $2, now(), $3)", cases, now, json.dumps(figures))
    finally:
        await conn.close()


# -- measuring -------------------------------------------------------------------------------


async def sizes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SERVICES:
        conn = await asyncpg.connect(dsn(s))
        try:
            total = await conn.fetchval("SELECT pg_database_size(current_database())")
            tables = await conn.fetch(
                "SELECT c.relname, pg_total_relation_size(c.oid) AS size, c.reltuples::bigint AS rows "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC LIMIT 6"
            )
        finally:
            await conn.close()
        out[s] = {
            "mb": round(total / 2**20, 1),
            "tables": {r["relname"]: {"mb": round(r["size"] / 2**20, 1), "rows": r["rows"]} for r in tables},
        }
    return out


@dataclass
class Read:
    name: str
    service: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    token: str = "ops"
    stream: bool = False
    varies: str | None = None  # "case": a different case each request


@dataclass
class Timed:
    name: str
    warm_ms: float | None
    times_ms: list[float]
    status: int | None
    note: str = ""

    def figures(self) -> dict[str, Any]:
        from bench.common import pct

        return {
            "name": self.name,
            "warm_ms": self.warm_ms,
            "n": len(self.times_ms),
            "p50_ms": round(pct(self.times_ms, 50), 1) if self.times_ms else None,
            "p99_ms": round(pct(self.times_ms, 99), 1) if self.times_ms else None,
            "max_ms": round(max(self.times_ms), 1) if self.times_ms else None,
            "status": self.status,
            "note": self.note,
        }


class Measure:
    def __init__(
        self,
        urls: dict[str, str],
        tokens: dict[str, str],
        cases: list[str],
        runs: int,
        pids: dict[str, int],
        cluster: Any = None,
    ) -> None:
        self.pids = pids
        self.cluster = cluster
        self.restarts: list[dict[str, Any]] = []
        self.urls = urls
        self.tokens = tokens
        self.cases = cases
        self.runs = runs
        self.client = httpx.AsyncClient(timeout=TIMEOUT)

    async def once(self, read: Read, i: int) -> tuple[float, int, Any]:
        path = read.path
        headers = {"Authorization": f"Bearer {self.tokens[read.token]}"} if read.token else {}
        if read.varies == "case":
            cid = self.cases[i % len(self.cases)]
            path = path.format(case_id=cid)
            headers["X-Tracking-Token"] = tracking_token(cid)
        url = self.urls[read.service] + path
        started = time.perf_counter()
        if read.stream:
            async with self.client.stream("GET", url, params=read.params, headers=headers) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        break
                return (time.perf_counter() - started) * 1000, r.status_code, None
        r = await self.client.get(url, params=read.params, headers=headers)
        took = (time.perf_counter() - started) * 1000
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        return took, r.status_code, body

    async def time(self, read: Read) -> Timed:
        try:
            warm, status, _ = await self.once(read, 0)
        except httpx.TimeoutException:
            said = await self.settle(read.service)
            return Timed(read.name, None, [], None, f"timeout after {TIMEOUT:.0f} s{said}")
        if status >= 400:
            return Timed(read.name, round(warm, 1), [], status, f"answered {status}")
        runs = self.runs if warm < 1000 else 5 if warm < 10_000 else 2 if warm < 30_000 else 1
        times: list[float] = []
        for i in range(1, runs + 1):
            try:
                took, status, _ = await self.once(read, i)
            except httpx.TimeoutException:
                said = await self.settle(read.service)
                return Timed(read.name, round(warm, 1), times, status, f"timeout after {TIMEOUT:.0f} s{said}")
            if status >= 400:
                return Timed(read.name, round(warm, 1), times, status, f"answered {status} after {took:,.0f} ms")
            times.append(took)
        return Timed(read.name, round(warm, 1), times, status, "" if runs == self.runs else f"slow: {runs} runs")

    async def settle(self, service: str) -> str:
        """After a timeout the service is still working on the request (and holding what it
        loaded): its peak memory is noted, and it is restarted so the next reads start clean."""
        peak = memory_mb(self.pids[service]).get("VmHWM", 0.0)
        self.restarts.append({"service": service, "peak_rss_mb": peak})
        if self.cluster is None:
            return f"; {service} peak {peak:,.0f} MB"
        process = self.cluster[service]
        await asyncio.to_thread(process.stop)
        await asyncio.to_thread(process.start, 120)
        assert process.popen is not None
        self.pids[service] = process.popen.pid
        return f"; {service} peak RSS {peak:,.0f} MB, restarted"

    async def deep_cursor(self, read: Read, key: str, pages: int) -> tuple[Read, int]:
        """The read at the cursor of page `pages` (or the last page there is)."""
        params = dict(read.params)
        depth = 1
        for _ in range(pages - 1):
            _, status, body = await self.once(Read(read.name, read.service, read.path, params, read.token), 0)
            if status != 200 or not body or not body.get(key):
                break
            params["cursor"] = body[key]
            depth += 1
        name = read.name.replace("first page", f"page {depth} (deep cursor)")
        return Read(name, read.service, read.path, params, read.token), depth


def chosen(now: datetime, only: Sequence[str]) -> list[Read]:
    """The reads whose names hold one of `only` (every read if it is empty)."""
    return [r for r in reads(now) if not only or any(o.lower() in r.name.lower() for o in only)]


def reads(now: datetime) -> list[Read]:
    def window(days: int) -> dict[str, str]:
        return {"since": (now - timedelta(days=days)).isoformat(), "until": now.isoformat()}

    return [
        Read("handler queue U-G11, first page", "departments", "/v1/units/U-G11/tickets", token="handler"),
        Read(
            "U-G11 resolved tickets, first page",
            "departments",
            "/v1/units/U-G11/tickets",
            {"status": "resolved"},
            token="handler",
        ),
        Read("queue D-URBAN (largest), first page", "departments", "/v1/units/D-URBAN/tickets", token="D-URBAN"),
        Read("supervisor subtree queue U-C1", "departments", "/v1/tickets", token="supervisor:U-C1"),
        Read("supervisor subtree queue U-S1", "departments", "/v1/tickets", token="supervisor:U-S1"),
        Read("GET /v1/cases/{id}", "intake", "/v1/cases/{case_id}", token="", varies="case"),
        Read("GET /v1/ops/cases/{id}", "dispatcher", "/v1/ops/cases/{case_id}", varies="case"),
        Read("ops/breaches state=all, month", "dispatcher", "/v1/ops/breaches", {"state": "all", **window(30)}),
        Read("ops/watch (board rows)", "dispatcher", "/v1/ops/watch"),
        Read("board snapshot (SSE)", "dispatcher", "/v1/ops/breaches/stream", stream=True),
        Read("public/results, first page", "intake", "/v1/public/results", token=""),
        Read("Open311 GET requests (90 days)", "intake", "/open311/v2/requests.json", token=""),
        Read("Open311 servicerequestupdates (90 d)", "intake", "/open311/v2/servicerequestupdates.json", token=""),
        Read("ops/stats, day", "dispatcher", "/v1/ops/stats", window(1)),
        Read("ops/stats, day, street S1", "dispatcher", "/v1/ops/stats", {**window(1), "street": "S1"}),
        Read("ops/stats, month", "dispatcher", "/v1/ops/stats", window(30)),
        Read("ops/stats, month, street S1", "dispatcher", "/v1/ops/stats", {**window(30), "street": "S1"}),
        Read("ops/stats, year", "dispatcher", "/v1/ops/stats", window(365)),
        Read("ops/stats, year, street S1", "dispatcher", "/v1/ops/stats", {**window(365), "street": "S1"}),
        Read("ops/stats/daily, year", "dispatcher", "/v1/ops/stats/daily", window(365)),
        Read("scorecards grids, quarter", "dispatcher", "/v1/ops/scorecards", {"kind": "grid", **window(91)}),
        Read("scorecards grids, year", "dispatcher", "/v1/ops/scorecards", {"kind": "grid", **window(365)}),
    ]


DEEP = {  # reads timed again at the cursor of a later page: (the answer's cursor, the page)
    "handler queue U-G11, first page": ("next_cursor", 20),
    "U-G11 resolved tickets, first page": ("next_cursor", 50),
    "queue D-URBAN (largest), first page": ("next_cursor", 20),
    "public/results, first page": ("next_cursor", 50),
}


async def sample_cases(n: int) -> list[str]:
    conn = await asyncpg.connect(dsn("intake"))
    try:
        rows = await conn.fetch("SELECT case_id FROM intake_case_views ORDER BY random() LIMIT $1", n)
    finally:
        await conn.close()
    return [r["case_id"] for r in rows]


async def measure_all(
    urls: dict[str, str], tokens: dict[str, str], cluster: Any, now: datetime, runs: int, only: Sequence[str]
) -> dict[str, Any]:
    cases = await sample_cases(max(60, runs + 5))
    pids = {s: p.popen.pid for s, p in cluster.processes.items() if p.popen}
    m = Measure(urls, tokens, cases, runs, pids, cluster)
    rss_before = {s: memory_mb(p) for s, p in pids.items()}
    results = []
    try:
        for read in chosen(now, only):
            timed = await m.time(read)
            results.append(timed)
            print(_line(timed.figures()), flush=True)
            if read.name in DEEP and timed.status == 200:
                key, pages = DEEP[read.name]
                deep, depth = await m.deep_cursor(read, key, pages)
                timed = await m.time(deep)
                results.append(timed)
                print(_line(timed.figures()), flush=True)
    finally:
        await m.client.aclose()
    rss_after = {s: memory_mb(p) for s, p in m.pids.items()}
    return {
        "reads": [t.figures() for t in results],
        "rss_before": rss_before,
        "rss_after": rss_after,
        "restarts_after_timeouts": m.restarts,
    }


def _line(f: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.1f}"

    return (
        f"  {f['name']:<44} {ms(f['p50_ms']):>10} {ms(f['p99_ms']):>10} {ms(f['warm_ms']):>10} "
        f"{f['n']:>4}  {f['status'] or '-'} {f['note']}"
    )


# -- EXPLAIN, through auto_explain on the bench's own databases --------------------------------

LOG = Path("/var/log/postgresql/postgresql-15-main.log")
EXPLAIN_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_nested_statements": "off",
}


async def explaining(on: bool) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        for s in SERVICES:
            for k, v in EXPLAIN_SETTINGS.items():
                if on:
                    await conn.execute(f"ALTER DATABASE \"{PREFIX}_{s}\" SET {k} = '{v}'")
                else:
                    await conn.execute(f'ALTER DATABASE "{PREFIX}_{s}" RESET {k}')
    finally:
        await conn.close()


# The statements the services' loops run on their own (outbox relays, timers, deliveries, the
# pruner, rate windows, locks), not those of the read.
BACKGROUND = re.compile(
    r"Query Text: (WITH RECURSIVE typeinfo_tree|SELECT pg_try_advisory|DELETE FROM \w+_(outbox|rate_windows)"
    r"|UPDATE \w+_deliveries|SELECT min\(dispatcher_timers|SELECT max\(dispatcher_history)"
    r"|SKIP LOCKED"
)


def plans_logged(since: int, service: str) -> list[str]:
    """The plans auto_explain logged since byte `since` of the log for `service`'s database."""
    with LOG.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    entries = re.split(r"\n(?=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+ \w+ \[)", text)
    mine = f"@{PREFIX}_{service} "
    return [
        e
        for e in entries
        if mine in e.split("\n", 1)[0] and "duration:" in e and "Query Text" in e and not BACKGROUND.search(e)
    ]


def _duration(entry: str) -> float:
    found = re.search(r"duration: ([\d.]+) ms", entry)
    return float(found.group(1)) if found else 0.0


async def explain_all(
    urls: dict[str, str], tokens: dict[str, str], cluster: Any, now: datetime, skip: set[str], only: Sequence[str]
) -> dict[str, list[str]]:
    """One request per read (not those that timed out when measured), every statement's plan
    logged by auto_explain; the three slowest statements' plans per read."""
    cases = await sample_cases(5)
    pids = {s: p.popen.pid for s, p in cluster.processes.items() if p.popen}
    m = Measure(urls, tokens, cases, 1, pids, cluster)
    out: dict[str, list[str]] = {}
    try:
        for read in chosen(now, only):
            if read.name in skip:
                out[read.name] = ["timed out when measured: not explained"]
                continue
            start = LOG.stat().st_size  # noqa: ASYNC240 - a stat between requests
            try:
                _, status, _ = await m.once(read, 1)
            except httpx.TimeoutException:
                out[read.name] = ["timeout" + await m.settle(read.service)]
                continue
            await asyncio.sleep(0.3)
            found = plans_logged(start, read.service)
            if status != 200:
                found.insert(0, f"answered {status}")
            found.sort(key=lambda e: -_duration(e))
            out[read.name] = found[:3]
    finally:
        await m.client.aclose()
    return out


# -- the run ---------------------------------------------------------------------------------


def start_services(offset_s: float, secret: str, bootstrap: str, logs: Path) -> Any:
    from tests.support.cluster import Cluster, Process, base_env, distributed_settings
    from tests.support.servers import free_port

    settings = distributed_settings(
        sqlalchemy_url("intake"),
        bootstrap,
        f"year{uuid.uuid4().hex[:6]}",
        GRIDCALL_SECRET_KEY=secret,
        **{f"GRIDCALL_{s.upper()}_DATABASE_URL": sqlalchemy_url(s) for s in SERVICES},
    )
    env = base_env(settings)
    cluster = Cluster()
    try:
        for name in SERVICES:
            port = free_port()
            args = [sys.executable, "-m", "bench.year", "serve", name, str(port), str(offset_s)]
            p = Process(name, port, args, env, logs / f"{name}.log")
            cluster.processes[name] = p
            p.start(timeout=120)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="measure the seed already there (if it has --cases)")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per read, after one warm-up")
    parser.add_argument("--workers", type=int, default=2, help="processes simulating cases")
    parser.add_argument("--explain", action="store_true", help="then log each read's SQL plans (auto_explain)")
    parser.add_argument(
        "--only", action="append", default=[], help="only the reads whose names hold this (repeatable; e.g. queue)"
    )
    args = parser.parse_args()
    only = [o.strip() for o in args.only if o.strip()]

    from tests.support.servers import kafka_broker

    record = asyncio.run(seeded(args.cases)) if args.reuse else None
    secret = secrets.token_urlsafe(32)
    if record is None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        print(f"seeding {args.cases:,} cases, the year up to {now:%Y-%m-%d %H:%M} UTC, into {PREFIX}_*", flush=True)
        asyncio.run(fresh_databases())
        migrate()
        clock = ShiftedClock(now - datetime.now(UTC))
        _, _, handlers = asyncio.run(enrolled(clock, secret))
        figures = seed(args.cases, now, handlers, args.workers)
        asyncio.run(record_seed(args.cases, now, figures))
        print(f"seeded in {figures['seconds_total']:.0f} s: {figures['how']}", flush=True)
    else:
        now = record["now"]
        figures = json.loads(record["figures"])
        print(f"reusing the seed of {args.cases:,} cases up to {now:%Y-%m-%d %H:%M} UTC: {figures['how']}")
        started = time.monotonic()
        migrate()  # as a deployment would: migrations written since the seed run on the year's rows
        figures["migrated_on_reuse_s"] = round(time.monotonic() - started, 1)
        print(f"  schema brought up to date in {figures['migrated_on_reuse_s']:.0f} s", flush=True)
    offset = now - datetime.now(UTC)
    clock = ShiftedClock(offset)
    handler, supervisor, _ = asyncio.run(enrolled(clock, secret))
    tokens = {
        "ops": handler(),
        "handler": handler("U-G11"),
        "D-URBAN": handler("D-URBAN"),
        "supervisor:U-C1": supervisor("U-C1"),
        "supervisor:U-S1": supervisor("U-S1"),
    }
    db_sizes = asyncio.run(sizes())
    out: dict[str, Any] = {"now": now.isoformat(), "seed": figures, "db_sizes": db_sizes, "code": fingerprints()}
    with kafka_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        cluster = start_services(offset.total_seconds(), secret, broker.bootstrap, Path(tmp))
        try:
            urls = {s: cluster[s].url for s in SERVICES}
            print(f"  {'read':<44} {'p50 ms':>10} {'p99 ms':>10} {'warm ms':>10} {'n':>4}  status")
            out |= asyncio.run(measure_all(urls, tokens, cluster, now, args.runs, only))
        finally:
            cluster.stop()
        path = write_results(out)  # the measurements, whatever becomes of the plans
        if args.explain:
            asyncio.run(explaining(True))
            try:
                cluster = start_services(offset.total_seconds(), secret, broker.bootstrap, Path(tmp))
                try:
                    urls = {s: cluster[s].url for s in SERVICES}
                    skip = {r["name"] for r in out["reads"] if "timeout" in r["note"]}
                    out["plans"] = asyncio.run(explain_all(urls, tokens, cluster, now, skip, only))
                finally:
                    cluster.stop()
            finally:
                asyncio.run(explaining(False))
    report(out)
    write_results(out, path)
    print(f"JSON: {path}")


def write_results(out: dict[str, Any], path: Path | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = path or RESULTS / f"year-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    return path


def fingerprints() -> dict[str, str]:
    """The files another engineer rewrites meanwhile, as the services read them at start-up."""
    root = Path(__file__).parents[1]
    files = ("dispatcher/figures.py", "dispatcher/usecases.py", "dispatcher/api.py")
    return {f: hashlib.sha1((root / f).read_bytes()).hexdigest()[:12] for f in files}


def report(out: dict[str, Any]) -> None:
    seed = out["seed"]
    print(f"\nA year up to {out['now']}: {seed['cases']:,} cases; seeded in {seed['seconds_total']:.0f} s")
    print("  code: " + ", ".join(f"{f} {h}" for f, h in out["code"].items()))
    print(f"  seeding: {seed['how']}")
    print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in seed["rows"].items()))
    print(f"\n  {'read':<44} {'p50 ms':>10} {'p99 ms':>10} {'warm ms':>10} {'n':>4}  status")
    for f in out["reads"]:
        print(_line(f))
    print("\n  database sizes:")
    for s, d in out["db_sizes"].items():
        top = ", ".join(f"{t} {v['mb']:,.0f} MB" for t, v in list(d["tables"].items())[:4])
        print(f"    {s:<12} {d['mb']:>10,.0f} MB   ({top})")
    print("\n  service RSS (MB): before reads -> after reads (peak)")
    for s in out["rss_before"]:
        b, a = out["rss_before"][s], out["rss_after"][s]
        print(f"    {s:<12} {b.get('VmRSS', 0):>8,.0f} -> {a.get('VmRSS', 0):>8,.0f}   (peak {a.get('VmHWM', 0):,.0f})")
    for name, plans in out.get("plans", {}).items():
        print(f"\n  plans for {name}:")
        for p in plans:
            print("    " + p.replace("\n", "\n    "))


if __name__ == "__main__":
    main()
