"""What the ops API asks of the dispatcher's tables: the satisfaction rate, breaches now and in
history, a case's full routing history, and the rates gauges (the figures themselves are in
`dispatcher/figures.py`, the board's rows in `dispatcher/board/watch.py`). The routes are in
`dispatcher/api.py`."""

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Row, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.figures import FIRST_BREACH, Scope, Window, stats
from dispatcher.tables import assignments, cases, history
from services.district.clock import Clock
from services.district.errors import Invalid, NotFound
from services.district.jurisdiction import Jurisdiction
from services.district.policy import Policy
from services.runtime.metrics import Metrics, Probe
from services.storage.db import Database, fixed

ESCALATION_TYPES = ("case.sla_breached", "case.escalated", "case.returned", "case.whistled")
OUTCOMES = ("satisfied", "unsatisfied", "no_answer")
RATES = ("response", "resolution", "satisfaction", "on_time_closure", "grid_closure", "community_closure")
Q = TypeVar("Q", bound=Select[Any])


def late_now(now: datetime) -> Any:
    """Assignments past a limit right now: unclaimed past the response limit, or unresolved
    past the resolution limit (the conditions of ix_dispatcher_assignments_*_open)."""
    a = assignments.c
    return or_(
        and_(a.status == fixed("open"), a.response_due <= now),
        and_(a.status.in_([fixed("open"), fixed("claimed")]), a.resolution_due <= now),
    )


def window_of(since: datetime | None, until: datetime | None, now: datetime, policy: Policy) -> Window:
    """The window asked for, in the policy's time zone (both ends came with a zone of their
    own: services/district/text.py `Moment`), `until` after `since`; by default the 30 days up
    to now."""
    zone = policy.calendar.zone
    until = (until or now).astimezone(zone)
    since = (since or until - timedelta(days=30)).astimezone(zone)
    if until <= since:
        raise Invalid("until must come after since", loc=("query", "until"), kind="until_before_since")
    return Window(since, until, now)


def check_places(j: Jurisdiction, policy: Policy, **given: str | None) -> None:
    """An unknown street, community, unit or category is a mistake, not an empty answer."""
    known = {
        "street": lambda v: _has(j.street, v),
        "community": lambda v: _has(j.community, v),
        "unit": lambda v: j.unit(v) is not None,
        "category": lambda v: policy.category(v) is not None,
    }
    for name, value in given.items():
        if value is not None and not known[name](value):
            raise Invalid(f"no {name} {value!r} in the jurisdiction", loc=("query", name), kind="unknown_place")


def _has(lookup: Any, value: str) -> bool:
    try:
        lookup(value)
    except KeyError:
        return False
    return True


def _equal(query: Q, *filters: tuple[Any, str | None]) -> Q:
    """The query narrowed to rows where each column equals its value, if one was given."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query


def _rated(counts: dict[str, int]) -> dict[str, Any]:
    answered = counts.get("satisfied", 0) + counts.get("unsatisfied", 0)
    return {**counts, "rate": round(counts.get("satisfied", 0) / answered, 4) if answered else None}


async def satisfaction(
    db: Database,
    j: Jurisdiction,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    *,
    street: str | None,
    community: str | None,
    unit: str | None,
    category: str | None,
) -> dict[str, Any]:
    """Outcomes of satisfaction visits in the period (by default the 30 days up to now),
    overall and per unit that resolved the case."""
    until = until or now
    since = since or until - timedelta(days=30)
    reopened = history.c.type == "case.reopened"
    outcome = case((reopened, "unsatisfied"), else_=history.c.details["reason"].as_string()).label("outcome")
    by = case((reopened, history.c.details["unit_id"].as_string()), else_=cases.c.resolved_by).label("unit_id")
    query = (
        select(by, outcome, func.count().label("n"))
        .join_from(history, cases, history.c.case_id == cases.c.case_id)
        .where(
            history.c.at >= since,
            history.c.at <= until,
            or_(reopened, and_(history.c.type == "case.closed", outcome.in_(["satisfied", "no_answer"]))),
        )
        .group_by(by, outcome)
    )
    query = _equal(query, (cases.c.street_id, street), (cases.c.community_id, community))
    query = _equal(query, (cases.c.category, category), (by, unit))
    async with db.sessions() as s:
        rows = (await s.execute(query)).all()
    per_unit: dict[str, dict[str, int]] = {}
    for r in rows:
        per_unit.setdefault(r.unit_id, dict.fromkeys(OUTCOMES, 0))[r.outcome] += r.n
    total = {o: sum(c[o] for c in per_unit.values()) for o in OUTCOMES}
    units = []
    for u, c in sorted(per_unit.items()):
        found = j.unit(u)
        names = {"unit_name": found.name if found else None, "unit_name_zh": found.name_zh if found else None}
        units.append({"unit_id": u, **names, **_rated(c)})
    return {"since": since, "until": until, **_rated(total), "units": units}


async def breaches_now(
    db: Database,
    now: datetime,
    limit: int,
    *,
    street: str | None,
    community: str | None,
    unit: str | None,
    category: str | None,
) -> list[dict[str, Any]]:
    """Open assignments past their response or resolution limit right now (cases under
    supervision at the top tier too), most late first, with each case's escalations."""
    query = (
        select(
            cases.c.case_id,
            cases.c.category,
            cases.c.street_id,
            cases.c.community_id,
            cases.c.grid_id,
            cases.c.supervised,
            assignments.c.tier,
            assignments.c.unit_id,
            assignments.c.role,
            assignments.c.assignment_id,
            assignments.c.status,
            assignments.c.response_due,
            assignments.c.resolution_due,
        )
        .join(assignments, assignments.c.case_id == cases.c.case_id)
        .where(late_now(now))
    )
    query = _equal(query, (cases.c.street_id, street), (cases.c.community_id, community))
    query = _equal(query, (assignments.c.unit_id, unit), (cases.c.category, category))
    async with db.sessions() as s:
        rows = (await s.execute(query.order_by(assignments.c.response_due).limit(limit))).all()
        trail = await _escalations(s, {r.case_id for r in rows})
    out = []
    for r in rows:
        response = r.status == "open" and r.response_due <= now
        due = r.response_due if response else r.resolution_due
        out.append(
            {
                **r._mapping,
                "clock": "response" if response else "resolution",
                "due_at": due,
                "late_seconds": (now - due).total_seconds(),
                "escalations": [{"at": h.at, "type": h.type, **h.details} for h in trail.get(r.case_id, [])],
            }
        )
    return sorted(out, key=lambda b: -b["late_seconds"])


async def case_history(db: Database, case_id: str) -> dict[str, Any]:
    """A case as the dispatcher holds it, with every assignment and every event recorded."""
    async with db.sessions() as s:
        case = (await s.execute(select(cases).where(cases.c.case_id == case_id))).first()
        if case is None:
            raise NotFound(f"no case {case_id!r} in the dispatcher")
        given = await s.execute(select(assignments).where(assignments.c.case_id == case_id).order_by(assignments.c.seq))
        trail = await s.execute(select(history).where(history.c.case_id == case_id).order_by(history.c.id))
        return {
            **case._mapping,
            "assignments": [a._asdict() for a in given],
            "history": [{"at": h.at, "type": h.type, **h.details} for h in trail],
        }


async def breach_history(
    db: Database,
    window: Window,
    limit: int,
    *,
    after: int | None = None,
    through: int | None = None,
    **only: str | None,
) -> list[dict[str, Any]]:
    """Every first breach (`repeat` 0; a supervised case's later alerts are not new breaches)
    recorded in the window, newest first, with the escalation recorded with it; `after` and
    `through` bound the history rows' ids (the live board asks for those it has not seen)."""
    missed = history.c.details["assignment_id"].as_string()
    query = (
        select(
            history.c.id,
            history.c.at,
            history.c.details,
            cases.c.case_id,
            cases.c.category,
            cases.c.street_id,
            cases.c.community_id,
            cases.c.grid_id,
            cases.c.supervised,
            assignments.c.role,
            assignments.c.claimed_at,
            assignments.c.resolved_at,
        )
        .join_from(history, cases, history.c.case_id == cases.c.case_id)
        .join(assignments, assignments.c.assignment_id == missed)
        .where(
            FIRST_BREACH,
            history.c.at >= window.since,
            history.c.at < window.until,
        )
    )
    if after is not None:
        query = query.where(history.c.id > after)
    if through is not None:
        query = query.where(history.c.id <= through)
    query = _equal(query, (cases.c.street_id, only.get("street")), (cases.c.community_id, only.get("community")))
    query = _equal(
        query, (history.c.details["unit_id"].as_string(), only.get("unit")), (cases.c.category, only.get("category"))
    )
    async with db.sessions() as s:
        rows = (await s.execute(query.order_by(history.c.at.desc(), history.c.id.desc()).limit(limit))).all()
        trail = await _escalations(s, {r.case_id for r in rows})
    out = []
    for r in rows:
        d = r.details
        due = datetime.fromisoformat(d["due_at"])
        met = r.claimed_at if d["clock"] == "response" else r.resolved_at
        followed = next(
            (h for h in trail.get(r.case_id, []) if h.id > r.id and h.at == r.at and h.type == "case.escalated"),
            None,
        )
        out.append(
            {
                "breach_id": r.id,
                **{k: getattr(r, k) for k in ("case_id", "category", "street_id", "community_id", "grid_id", "role")},
                "supervised": r.supervised,
                "tier": d["tier"],
                "unit_id": d["unit_id"],
                "assignment_id": d["assignment_id"],
                "clock": d["clock"],
                "due_at": due,
                "late_seconds": d["late_seconds"],
                "breached_at": r.at,
                "outcome": "supervised" if d.get("supervised") else "escalated",
                "escalated_to_unit_id": followed.details["to_unit_id"] if followed else None,
                "escalated_to_tier": followed.details["to_tier"] if followed else None,
                "met_at": met if met is not None and met > due else None,
                "escalations": [{"at": h.at, "type": h.type, **h.details} for h in trail.get(r.case_id, [])],
            }
        )
    return out


def rates_probe(db: Database, clock: Clock, policy: Policy, metrics: Metrics, every: float = 60.0) -> Probe:
    """The district's rates over the last 30 whole days and today so far (from local midnight
    30 days ago) as gauges, for the operators' dashboard: worked out as `/v1/ops/stats` works them out, at
    most once a minute however often Prometheus scrapes."""
    last = [float("-inf")]

    async def probe() -> None:
        if time.monotonic() - last[0] < every:
            return
        last[0] = time.monotonic()
        now = clock.now()
        window = window_of(policy.calendar.midnight(now) - timedelta(days=30), now, now, policy)
        figures = await stats(db, window, {}, Scope())
        for name in RATES:
            value = figures[name]["rate"]
            metrics.child(metrics.rates, (name,)).set(float("nan") if value is None else value)

    return probe


async def _escalations(s: AsyncSession, case_ids: set[str]) -> dict[str, list[Row[Any]]]:
    """What followed the breaches of these cases (escalated to whom, or supervised), in order, per case."""
    query = select(history).where(history.c.case_id.in_(case_ids), history.c.type.in_(ESCALATION_TYPES))
    return by_case(await s.execute(query.order_by(history.c.id)))


def by_case(trail: Iterable[Row[Any]]) -> dict[str, list[Row[Any]]]:
    """History rows per case, in the order given (a lookup per case, not a scan of them all)."""
    per_case: dict[str, list[Row[Any]]] = {}
    for h in trail:
        per_case.setdefault(h.case_id, []).append(h)
    return per_case
