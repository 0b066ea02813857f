"""The year's cases, simulated by the figures test's generator (in worker processes), and the rows
each service would have written for them."""

import hashlib
import importlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.year import NOTIFICATIONS_KEPT, TEMPLATE_HORIZON

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
