from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, case, func, or_, select

from dispatcher.domain import AssignmentStatus, CaseStatus
from dispatcher.figures import Window
from dispatcher.figures_api import check_places, window_of
from dispatcher.tables import assignments, cases, history
from services.district.clock import Clock
from services.district.events import Priority, Role, Tier
from services.district.jurisdiction import Jurisdiction
from services.district.policy import Policy
from services.district.text import Identifier
from services.storage.db import Database
from services.web.auth import OpsDep
from services.web.errors import Invalid, NotFound
from services.web.openapi import problem

ESCALATION_TYPES = ("case.sla_breached", "case.escalated", "case.returned", "case.whistled")


class Breach(BaseModel):
    case_id: str
    category: str
    street_id: str
    community_id: str
    grid_id: str
    tier: str
    unit_id: str
    role: str
    assignment_id: str
    clock: str
    due_at: datetime
    late_seconds: float
    supervised: bool
    escalations: list[dict[str, Any]]
    breached_at: datetime | None = Field(None, description="state=all: when the breach was recorded")
    outcome: str | None = Field(
        None, description="state=all: what followed: escalated (to the next tier) or supervised (督办, at the top tier)"
    )
    escalated_to_unit_id: str | None = None
    escalated_to_tier: str | None = None
    met_at: datetime | None = Field(
        None, description="state=all: when the missed clock was met after all (a late claim or resolution), if it was"
    )


class Visits(BaseModel):
    """回访 outcomes. `rate` is satisfied / answered; silence is counted apart (`no_answer`),
    since cities differ on whether an unanswered visit counts as satisfied."""

    satisfied: int = 0
    unsatisfied: int = 0
    no_answer: int = 0
    rate: float | None = None


class UnitVisits(Visits):
    unit_id: str
    unit_name: str | None


class Satisfaction(Visits):
    since: datetime
    until: datetime
    units: list[UnitVisits]


class Assignment(BaseModel):
    """One unit's turn at the case, with its two clocks (response: until claimed; resolution:
    until resolved), their warnings and breaches."""

    assignment_id: str = Field(description="also the ticket id on the departments side")
    case_id: str
    seq: int = Field(description="1 for the first assignment of the case, then 2, 3…")
    unit_id: str
    tier: Tier
    role: Role
    status: AssignmentStatus
    assigned_at: datetime
    response_due: datetime
    resolution_due: datetime
    response_warn_at: datetime
    resolution_warn_at: datetime
    response_warned: bool
    resolution_warned: bool
    response_breached: bool
    resolution_breached: bool
    next_alert_at: datetime | None = Field(description="the next supervision alert (督办), if under supervision")
    alerts: int
    claimed_at: datetime | None
    resolved_at: datetime | None
    end_reason: str | None = Field(description="why an ended assignment ended: escalated, returned, whistled…")
    note: str | None = Field(description="the handler's resolution note")


class HistoryEntry(BaseModel):
    """One event the dispatcher recorded, with its details (they differ per type)."""

    model_config = ConfigDict(extra="allow")
    at: datetime
    type: str = Field(description="the event type, e.g. case.assigned, case.sla_breached, case.returned")


class OpsCase(BaseModel):
    """A case as the dispatcher routes it: where it is now, every assignment, every event."""

    case_id: str
    category: str
    description: str
    details: dict[str, Any] = Field(description="address, category attributes and media the resident gave")
    grid_id: str
    community_id: str
    street_id: str
    priority: Priority
    status: CaseStatus
    tier: Tier
    unit_id: str = Field(description="the unit leading the case now")
    returns: int = Field(description="how many times units returned it (退单)")
    supervised: bool = Field(description="under supervision (督办) after a breach at the top tier")
    resolved: bool
    closed: bool
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    assignments: list[Assignment]
    history: list[HistoryEntry]


OUTCOMES = ("satisfied", "unsatisfied", "no_answer")
Q = TypeVar("Q", bound=Select[Any])


def _equal(query: Q, *filters: tuple[Any, str | None]) -> Q:
    """The query narrowed to rows where each column equals its value, if one was given."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query


def _rated(counts: dict[str, int]) -> dict[str, Any]:
    answered = counts.get("satisfied", 0) + counts.get("unsatisfied", 0)
    return {**counts, "rate": round(counts.get("satisfied", 0) / answered, 4) if answered else None}


def router(db: Database, clock: Clock, j: Jurisdiction, policy: Policy) -> APIRouter:
    api = APIRouter(prefix="/v1/ops", tags=["ops"])

    @api.get("/satisfaction", response_model=Satisfaction)
    async def satisfaction(
        _: OpsDep,
        since: Annotated[datetime | None, Query(description="from (default: 30 days ago)")] = None,
        until: Annotated[datetime | None, Query(description="to (default: now)")] = None,
        street: Annotated[Identifier | None, Query(description="street id, e.g. S1")] = None,
        community: Annotated[Identifier | None, Query(description="community id, e.g. C2")] = None,
        unit: Annotated[Identifier | None, Query(description="the unit that resolved the case")] = None,
        category: Annotated[Identifier | None, Query()] = None,
    ) -> dict[str, Any]:
        """The satisfaction rate (满意率): outcomes of satisfaction visits in the period, overall
        and per unit that resolved the case. A case reopened and resolved again counts each visit."""
        until = until or clock.now()
        since = since or until - timedelta(days=30)
        for name, moment in (("since", since), ("until", until)):
            if moment.tzinfo is None:
                raise Invalid(f"{name} needs a time zone, e.g. 2026-11-01T00:00:00+08:00", loc=("query", name))
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
        units = [
            {"unit_id": u, "unit_name": (found.name if (found := j.unit(u)) else None), **_rated(c)}
            for u, c in sorted(per_unit.items())
        ]
        return {"since": since, "until": until, **_rated(total), "units": units}

    @api.get("/breaches", response_model=list[Breach])
    async def breaches(
        _: OpsDep,
        street: Annotated[Identifier | None, Query(description="street id, e.g. S1")] = None,
        community: Annotated[Identifier | None, Query(description="community id, e.g. C2")] = None,
        unit: Annotated[
            Identifier | None, Query(description="current: the unit now holding the case; all: the unit that missed")
        ] = None,
        category: Annotated[Identifier | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        state: Annotated[
            Literal["current", "all"], Query(description="current: late right now; all: every breach recorded")
        ] = "current",
        since: Annotated[
            datetime | None, Query(description="state=all: from, with a time zone (default: 30 days ago)")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="state=all: to, excluded, with a time zone (default: now)")
        ] = None,
    ) -> list[dict[str, Any]]:
        """`current` (the default): cases past a limit right now: an open assignment past its
        response or resolution limit, including cases under supervision (督办) at the top tier,
        most late first. `all`: every breach recorded in the window (a breach below the bureau
        escalates the case at once, so it is late "now" for no time at all), newest first, with
        the unit that missed, the clock, how late it was when recorded, what followed, and when
        the clock was met after all."""
        check_places(j, policy, street=street, community=community, unit=unit, category=category)
        if state == "all":
            window = window_of(since, until, clock.now(), policy)
            return await breach_history(
                db, window, limit, street=street, community=community, unit=unit, category=category
            )
        now = clock.now()
        response_late = and_(assignments.c.status == "open", assignments.c.response_due <= now)
        resolution_late = and_(assignments.c.status.in_(["open", "claimed"]), assignments.c.resolution_due <= now)
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
            .where(or_(response_late, resolution_late))
        )
        query = _equal(query, (cases.c.street_id, street), (cases.c.community_id, community))
        query = _equal(query, (assignments.c.unit_id, unit), (cases.c.category, category))
        async with db.sessions() as s:
            rows = (await s.execute(query.order_by(assignments.c.response_due).limit(limit))).all()
            trail = (
                await s.execute(
                    select(history)
                    .where(history.c.case_id.in_({r.case_id for r in rows}), history.c.type.in_(ESCALATION_TYPES))
                    .order_by(history.c.id)
                )
            ).all()
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
                    "escalations": [{"at": h.at, "type": h.type, **h.details} for h in trail if h.case_id == r.case_id],
                }
            )
        return sorted(out, key=lambda b: -b["late_seconds"])

    @api.get("/cases/{case_id}", response_model=OpsCase, responses={404: problem("no case with this id")})
    async def case_history(case_id: str, _: OpsDep) -> dict[str, Any]:
        """The full routing history: every assignment, clock, warning, breach, escalation,
        return and whistle."""
        async with db.sessions() as s:
            case = (await s.execute(select(cases).where(cases.c.case_id == case_id))).first()
            if case is None:
                raise NotFound(f"no case {case_id!r} in the dispatcher")
            given = await s.execute(
                select(assignments).where(assignments.c.case_id == case_id).order_by(assignments.c.seq)
            )
            trail = await s.execute(select(history).where(history.c.case_id == case_id).order_by(history.c.id))
            return {
                **case._mapping,
                "assignments": [a._asdict() for a in given],
                "history": [{"at": h.at, "type": h.type, **h.details} for h in trail],
            }

    return api


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
            history.c.type == "case.sla_breached",
            history.c.at >= window.since,
            history.c.at < window.until,
            func.coalesce(history.c.details["repeat"].as_integer(), 0) == 0,
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
        trail = (
            await s.execute(
                select(history)
                .where(history.c.case_id.in_({r.case_id for r in rows}), history.c.type.in_(ESCALATION_TYPES))
                .order_by(history.c.id)
            )
        ).all()
    out = []
    for r in rows:
        d = r.details
        due = datetime.fromisoformat(d["due_at"])
        met = r.claimed_at if d["clock"] == "response" else r.resolved_at
        followed = next(
            (
                h
                for h in trail
                if h.case_id == r.case_id and h.id > r.id and h.at == r.at and h.type == "case.escalated"
            ),
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
                "escalations": [{"at": h.at, "type": h.type, **h.details} for h in trail if h.case_id == r.case_id],
            }
        )
    return out
