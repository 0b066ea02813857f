"""The figures ops steer by (三率, closure rates, escalations by cause, 红星考评) over a window,
worked out in the database from the dispatcher's own rows: its cases, their assignments and the
history it recorded. A request reads counts, not rows: a year of a big district is a million
cases, which no request may load into the process.

Each figure is decided per assignment or per case at one moment (a response clock is met at its
claim, missed at its limit, or never decided when the ticket ended unclaimed before its limit);
the queries below say so in SQL that PostgreSQL and SQLite answer alike. The definitions are in
docs/architecture.md ("Figures"); keep the two in step. tests/integration/test_figures_exact.py
recomputes every figure from a simulated history's events and compares.
"""

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, and_, exists, func, not_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatcher.tables import assignments, cases, history
from services.storage.clocksql import local_day, seconds_between
from services.storage.db import Database, fixed

TIERS = ("grid", "community", "street", "bureau")
CLOSING = ("satisfied", "no_answer")  # a cancelled case was withdrawn, not closed by its handling
ESCALATIONS = ("handler", "returned", "reassigned")


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    now: datetime

    def holds(self, at: Any) -> ColumnElement[bool]:
        return and_(at >= self.since, at < self.until)


@dataclass(frozen=True)
class Scope:
    """Narrowing by the unit or tier of an assignment: assignment figures count the matching
    assignments only; case figures count the cases with at least one matching assignment."""

    unit: str | None = None
    tier: str | None = None

    def matches(self) -> list[ColumnElement[bool]]:
        given = ((assignments.c.unit_id, self.unit), (assignments.c.tier, self.tier))
        return [column == value for column, value in given if value is not None]


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def durations(n: int, total: Any, p90: Any) -> dict[str, Any]:
    """Count, mean and nearest-rank 90th percentile (the smallest value at least 90% of the
    values reach) of `n` durations whose sum is `total` seconds."""
    return {
        "count": n,
        "average_seconds": round(float(total) / n, 3) if n else None,
        "p90_seconds": float(p90) if n else None,
    }


def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


@asynccontextmanager
async def reading(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (on SQLite it takes no write lock); on PostgreSQL with the memory
    to hash a year's cases without spilling to disk (work_mem is 4 MB by default)."""
    async with db.reading() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL work_mem = '64MB'"))
        yield conn


# -- what a window reads --------------------------------------------------------------------


def kept(window: Window, only: Mapping[str, str | None], scope: Scope) -> Subquery:
    """The cases the filters (street, community, category, priority) and `scope` keep that may
    have anything in the window: every case still open, and the closed ones touched since
    `since`. A subquery, not a CTE: the planner estimates each use from the cases' statistics
    (a CTE read twice is materialised, and estimated at a two-hundredth of its rows)."""
    query = select(cases.c.case_id, cases.c.category, cases.c.created_at).where(
        cases.c.created_at < window.until, or_(~cases.c.closed, cases.c.updated_at >= window.since)
    )
    for name, value in only.items():
        if value is not None:
            query = query.where(cases.c[f"{name}_id" if name in ("street", "community") else name] == value)
    if scope.matches():
        query = query.where(exists().where(assignments.c.case_id == cases.c.case_id, *scope.matches()))
    return query.subquery("kept")


def trail(chosen: Subquery, *types: str) -> Any:
    """The history of the chosen cases, of `types`."""
    return history.c.case_id.in_(select(chosen.c.case_id)), history.c.type.in_(types)


def detail(name: str) -> Any:
    return history.c.details[name]


# A breach, not a supervised case's repeated alert; its type written into the statement's text, as
# the condition of ix_dispatcher_history_breaches says it.
FIRST_BREACH = and_(history.c.type == fixed("case.sla_breached"), func.coalesce(detail("repeat").as_integer(), 0) == 0)


# -- an assignment's clocks -----------------------------------------------------------------


def clock_counts(window: Window, chosen: Subquery, scope: Scope, by: Any) -> Select[Any]:
    """Per value of `by` (an assignments column): the assignments given and claimed in the
    window, the time from assignment to claim, and each clock met and missed in the window. A
    clock is met when its claim (resolution: its resolution) came at or before its limit,
    decided then; missed when the limit passed with the ticket unclaimed (unresolved) and not
    ended before it, decided at the limit, once the limit is past."""
    a = assignments.c
    columns = [by.label("key"), count(window.holds(a.assigned_at)).label("assigned")]
    columns.append(count(window.holds(a.claimed_at)).label("claimed"))
    claim = seconds_between(a.claimed_at, a.assigned_at)
    columns.append(func.sum(claim).filter(window.holds(a.claimed_at)).label("claim_seconds"))
    for clock, due, done in (
        ("response", a.response_due, a.claimed_at),
        ("resolution", a.resolution_due, a.resolved_at),
    ):
        met = and_(done.is_not(None), done <= due)
        missed = and_(not_(met), due <= window.now, or_(a.ended_at.is_(None), a.ended_at >= due))
        columns.append(count(and_(met, window.holds(done))).label(f"{clock}_met"))
        columns.append(count(and_(missed, window.holds(due))).label(f"{clock}_missed"))
    return (
        select(*columns)
        .join_from(assignments, chosen, a.case_id == chosen.c.case_id)
        .where(*scope.matches())
        .group_by(by)
    )


async def nearest_rank(s: AsyncConnection, values: Select[Any], n: int) -> Any:
    """The nearest-rank 90th percentile of `values` (a one-column query of `n` rows): the
    ⌈0.9·n⌉-th smallest, asked for as the (n − ⌈0.9·n⌉ + 1)-th largest, which the database finds
    keeping a tenth of the values in order rather than sorting them all."""
    if not n:
        return None
    column = values.selected_columns[0]
    larger = n - math.ceil(0.9 * n)
    return (await s.execute(values.order_by(column.desc()).limit(1).offset(larger))).scalar_one()


# -- the figures ----------------------------------------------------------------------------


async def stats(db: Database, window: Window, only: Mapping[str, str | None], scope: Scope) -> dict[str, Any]:
    """The window's figures for the cases `only` keeps, narrowed by `scope`."""
    chosen = kept(window, only, scope)
    a, h = assignments.c, history.c
    async with reading(db) as s:
        tiers = {r.key: r for r in await s.execute(clock_counts(window, chosen, scope, a.tier))}
        claims = sum(r.claimed for r in tiers.values())
        claim_p90 = await nearest_rank(
            s,
            select(seconds_between(a.claimed_at, a.assigned_at))
            .join_from(assignments, chosen, a.case_id == chosen.c.case_id)
            .where(window.holds(a.claimed_at), *scope.matches()),
            claims,
        )
        seen = await _seen(s, window, chosen)
        resolved = (
            select(chosen.c.category, assignments.c.tier, seconds_between(h.at, chosen.c.created_at).label("took"))
            .join_from(history, chosen, h.case_id == chosen.c.case_id)
            .join(assignments, a.assignment_id == detail("assignment_id").as_string())
            .where(h.type == "case.resolved", window.holds(h.at))
            .subquery()
        )
        resolutions = (
            await s.execute(
                select(resolved.c.category, resolved.c.tier, func.count(), func.sum(resolved.c.took)).group_by(
                    resolved.c.category, resolved.c.tier
                )
            )
        ).all()
        resolve_p90 = await nearest_rank(s, select(resolved.c.took), sum(r[2] for r in resolutions))
        reported = (
            await s.execute(
                select(chosen.c.category, func.count())
                .where(window.holds(chosen.c.created_at))
                .group_by(chosen.c.category)
            )
        ).all()
        closure = (await s.execute(_closure(window, chosen))).one()

    def clock(name: str) -> dict[str, Any]:
        met = sum(getattr(r, f"{name}_met") for r in tiers.values())
        counted = met + sum(getattr(r, f"{name}_missed") for r in tiers.values())
        return {"met": met, "counted": counted, "rate": rate(met, counted)}

    closed_by = {r: seen[f"closed_{r}"] for r in ("satisfied", "no_answer", "cancelled")}
    visits = {"satisfied": closed_by["satisfied"], "unsatisfied": seen["reopened"]}
    answered = closed_by["satisfied"] + closed_by["no_answer"]
    by_category: dict[str, dict[str, int]] = {}
    for category, n in reported:
        by_category.setdefault(category, {"reported": 0, "resolved": 0})["reported"] += n
    by_tier = {t: {"assigned": tiers[t].assigned if t in tiers else 0, "resolved": 0} for t in TIERS}
    for category, tier, n, _ in resolutions:
        by_category.setdefault(category, {"reported": 0, "resolved": 0})["resolved"] += n
        by_tier[tier]["resolved"] += n
    resolved_count = sum(r[2] for r in resolutions)
    return {
        "reported": sum(n for _, n in reported),
        "assigned": sum(r.assigned for r in tiers.values()),
        "claimed": claims,
        "resolved": resolved_count,
        "closed": sum(closed_by.values()),
        "closed_by_reason": closed_by,
        "response": clock("response"),
        "resolution": clock("resolution"),
        "satisfaction": {
            **visits,
            "no_answer": closed_by["no_answer"],
            "rate": rate(visits["satisfied"], visits["satisfied"] + visits["unsatisfied"]),
        },
        "on_time_closure": {"on_time": seen["on_time"], "closed": answered, "rate": rate(seen["on_time"], answered)},
        "time_to_claim": durations(claims, sum(r.claim_seconds or 0 for r in tiers.values()), claim_p90),
        "time_to_resolve": durations(resolved_count, sum(r[3] or 0 for r in resolutions), resolve_p90),
        "by_category": dict(sorted(by_category.items())),
        "by_tier": by_tier,
        "escalations": {
            "response_breach": seen["breached_response"],
            "resolution_breach": seen["breached_resolution"],
            **{reason: seen[f"escalated_{reason}"] for reason in ESCALATIONS},
            "whistled": seen["whistled"],
            "supervised": seen["supervised"],
        },
        "grid_closure": {
            "kept": closure.grid_kept,
            "started": closure.grid,
            "rate": rate(closure.grid_kept, closure.grid),
        },
        "community_closure": {
            "kept": closure.community_kept,
            "started": closure.community,
            "rate": rate(closure.community_kept, closure.community),
        },
    }


async def _seen(s: AsyncConnection, window: Window, chosen: Subquery) -> dict[str, int]:
    """The events of the chosen cases recorded in the window, counted by what the figures tell
    apart: closings by reason (and those on time: a case closed by its handling with no breach
    before; a closing ends every assignment, so that is a case none of whose assignments ever
    breached, which their rows say), escalations by reason, first breaches by clock and
    supervision, and the rest by type."""
    h, a, closings = history.c, assignments.c, history.alias("closings")
    closed = select(closings.c.case_id).where(
        closings.c.type == "case.closed",
        window.holds(closings.c.at),
        closings.c.case_id.in_(select(chosen.c.case_id)),
    )
    breached = (
        select(a.case_id)
        .where(or_(a.response_breached, a.resolution_breached), a.case_id.in_(closed))
        .distinct()
        .subquery("breached")
    )
    reason, clock = detail("reason").as_string(), detail("clock").as_string()
    supervised = detail("supervised").as_boolean()
    figures = {
        "on_time": and_(h.type == "case.closed", reason.in_(CLOSING), breached.c.case_id.is_(None)),
        **{f"closed_{r}": and_(h.type == "case.closed", reason == r) for r in ("satisfied", "no_answer", "cancelled")},
        **{f"escalated_{r}": and_(h.type == "case.escalated", reason == r) for r in ESCALATIONS},
        "reopened": h.type == "case.reopened",
        "whistled": h.type == "case.whistled",
        **{f"breached_{c}": and_(FIRST_BREACH, clock == c, not_(supervised)) for c in ("response", "resolution")},
        "supervised": and_(FIRST_BREACH, supervised),
    }
    query = (
        select(*(count(condition).label(name) for name, condition in figures.items()))
        .select_from(history.outerjoin(breached, breached.c.case_id == h.case_id))
        .where(
            *trail(chosen, "case.closed", "case.reopened", "case.sla_breached", "case.escalated", "case.whistled"),
            window.holds(h.at),
        )
    )
    return dict((await s.execute(query)).one()._mapping)


def _closure(window: Window, chosen: Subquery) -> Select[Any]:
    """小事不出网格，大事不出社区: of the cases reported in the window that started at the grid
    (at the grid or community), leaving out those withdrawn before `until`, those resolved
    before `until` with every assignment given them before `until` at the same tiers. A case's
    events come after its report, so the cohort's are those recorded in the window."""
    a, h = assignments.c, history.c
    cohort = select(chosen.c.case_id).where(window.holds(chosen.c.created_at))
    given = (
        select(
            a.case_id,
            func.min(a.seq).label("first"),
            count(and_(a.assigned_at < window.until, a.tier != "grid")).label("off_grid"),
            count(and_(a.assigned_at < window.until, a.tier.not_in(("grid", "community")))).label("off_community"),
        )
        .where(a.case_id.in_(cohort))
        .group_by(a.case_id)
        .subquery("given")
    )
    ends = (
        select(
            h.case_id,
            count(and_(h.type == "case.closed", detail("reason").as_string() == "cancelled")).label("cancelled"),
            count(h.type == "case.resolved").label("resolved"),
        )
        .where(h.case_id.in_(cohort), h.type.in_(("case.closed", "case.resolved")), window.holds(h.at))
        .group_by(h.case_id)
        .subquery("ends")
    )
    first = assignments.alias("first")
    counts: list[Any] = []
    for name, tiers, off in (
        ("grid", ("grid",), given.c.off_grid),
        ("community", ("grid", "community"), given.c.off_community),
    ):
        begun = and_(first.c.tier.in_(tiers), func.coalesce(ends.c.cancelled, 0) == 0)
        counts += [count(begun).label(name), count(and_(begun, ends.c.resolved > 0, off == 0)).label(f"{name}_kept")]
    return select(*counts).select_from(
        given.join(first, and_(first.c.case_id == given.c.case_id, first.c.seq == given.c.first)).outerjoin(
            ends, ends.c.case_id == given.c.case_id
        )
    )


DAILY = ("opened", "escalated", "resolved", "closed", "breached")
_DAILY_KINDS = {
    "case.escalated": "escalated",
    "case.whistled": "escalated",
    "case.resolved": "resolved",
    "case.closed": "closed",
    "case.sla_breached": "breached",
}


async def daily(
    db: Database, window: Window, only: Mapping[str, str | None], scope: Scope, zone: tzinfo
) -> list[dict[str, Any]]:
    """Per day of the policy's time zone that the window touches: cases opened (reported),
    escalated (`case.escalated`, any reason, and `case.whistled`), resolved (`case.resolved`),
    closed (`case.closed`, any reason) and breached (first breaches, supervised or not)."""
    chosen = kept(window, only, scope)
    h, name = history.c, str(zone)
    first, last = (
        window.since.astimezone(zone).date(),
        (window.until - timedelta(microseconds=1)).astimezone(zone).date(),
    )
    days = {(first + timedelta(days=n)).isoformat(): dict.fromkeys(DAILY, 0) for n in range((last - first).days + 1)}
    opened = (
        select(local_day(chosen.c.created_at, name).label("day")).where(window.holds(chosen.c.created_at)).subquery()
    )
    events = (
        select(local_day(h.at, name).label("day"), h.type.label("type"))
        .where(
            *trail(chosen, *_DAILY_KINDS),
            window.holds(h.at),
            func.coalesce(detail("repeat").as_integer(), 0) == 0,
        )
        .subquery()
    )
    async with reading(db) as s:
        for day, n in await s.execute(select(opened.c.day, func.count()).group_by(opened.c.day)):
            days[day]["opened"] += n
        for day, kind, n in await s.execute(
            select(events.c.day, events.c.type, func.count()).group_by(events.c.day, events.c.type)
        ):
            days[day][_DAILY_KINDS[kind]] += n
    return [{"day": d, **counts} for d, counts in days.items()]
