"""The figures ops steer by (三率, closure rates, escalations by cause, 红星考评) over a window,
worked out in the database from the dispatcher's own rows: its cases, their assignments and the
history it recorded. A request reads counts, not rows: a year of a big district is a million
cases, which no request may load into the process.

Every figure but two is a count of *facts*, each at one moment: an assignment given, claimed, its
response clock met (at its claim) or missed (at its limit), a case reported, resolved, closed,
escalated, and so on. `facts` says each one in SQL that PostgreSQL and SQLite answer alike, with
the case's place, category and priority and the assignment's unit and tier. The rollup worker
(dispatcher/rollup.py) keeps their counts hour by hour in `dispatcher_figure_hours`; a window
reads the whole hours it covers from there and the rest (its ragged ends, the latest hours, an
hour a later change made stale) from the rows, and adds them up: the same facts either way, so
the answer is the same. The closure rates are counts of facts too, each kept with the hour of
its case's report as well (`closure`). A figure narrowed to a unit or tier (`Scope`: the cases
with such an assignment) is read from the rows alone, and so are the 90th percentiles, which are
not counts.

The definitions are in docs/architecture.md ("Figures"); keep the two in step.
tests/integration/test_figures_exact.py recomputes every figure from a simulated history's
events and compares, rolled up and not.
"""

import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Subquery,
    and_,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatcher.tables import assignments, cases, figure_hours, figure_mark, figure_stale, history
from services.storage.clocksql import epoch_hour, hour_of, hour_start, local_day, seconds_between
from services.storage.db import Database, fixed

TIERS = ("grid", "community", "street", "bureau")
CLOSING = ("satisfied", "no_answer")  # a cancelled case was withdrawn, not closed by its handling
ESCALATIONS = ("handler", "returned", "reassigned")
PLACE = ("street_id", "community_id", "category", "priority")  # a case's, for its facts
DIMS = (*PLACE, "unit_id", "tier")  # and an assignment's ('' for a fact of no assignment)


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


@asynccontextmanager
async def reading(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (on SQLite it takes no write lock); on PostgreSQL with the memory
    to hash a year's cases without spilling to disk (work_mem is 4 MB by default)."""
    async with db.reading() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL work_mem = '64MB'"))
        yield conn


# -- what a window reads --------------------------------------------------------------------


def kept(window: Window, only: Mapping[str, str | None], scope: Scope, *, changed: bool = False) -> Subquery:
    """The cases the filters (street, community, category, priority) and `scope` keep that may
    have anything in the window: every case still open, and the closed ones touched since
    `since`; with `changed`, only the cases touched since `since` (a fact that is a change of the
    case, as a closure's step is, comes with one). A subquery, not a CTE: the planner estimates
    each use from the cases' statistics (a CTE read twice is materialised, and estimated at a
    two-hundredth of its rows)."""
    c = cases.c
    touched = c.updated_at >= window.since
    query = select(c.case_id, c.created_at, *(c[name] for name in PLACE)).where(
        c.created_at < window.until, touched if changed else or_(~c.closed, touched)
    )
    for name, value in only.items():
        if value is not None:
            query = query.where(c[f"{name}_id" if name in ("street", "community") else name] == value)
    if scope.matches():
        query = query.where(exists().where(assignments.c.case_id == c.case_id, *scope.matches()))
    return query.subquery("kept")


def detail(name: str) -> Any:
    return history.c.details[name]


# A breach, not a supervised case's repeated alert; its type written into the statement's text, as
# the condition of ix_dispatcher_history_breaches says it.
FIRST_BREACH = and_(history.c.type == fixed("case.sla_breached"), func.coalesce(detail("repeat").as_integer(), 0) == 0)


def named(name: str) -> ColumnElement[str]:
    """A fact's name (one of ours, never input) written into the statement."""
    return literal_column(f"'{name}'", String)


def _one_of(column: str, *names: str) -> Subquery:
    """A row per name: what a row of a table is joined with to say each of its facts."""
    return union_all(*(select(named(n).label(column)) for n in names)).subquery(column)


# -- the facts ------------------------------------------------------------------------------


def _assignment_facts(window: Window, chosen: Subquery, scope: Scope) -> Select[Any]:
    """An assignment's facts: given (at its assignment), claimed (at its claim, with the time it
    took), and each clock met or missed. A clock is met when its claim (resolution: its
    resolution) came at or before its limit, decided then; missed when the limit passed with
    the ticket unclaimed (unresolved) and not ended before it, decided at the limit, once the
    limit is past. dispatcher/rollup.py `contributions` says the same in Python."""
    a, f = assignments.c, _one_of("figure", *ASSIGNMENT_FIGURES)
    moments: list[tuple[str, Any]] = [("assigned", a.assigned_at), ("claimed", a.claimed_at)]
    clocks = (("response", a.response_due, a.claimed_at), ("resolution", a.resolution_due, a.resolved_at))
    for clock, due, done in clocks:
        met = and_(done.is_not(None), done <= due)
        missed = and_(not_(met), due <= window.now, or_(a.ended_at.is_(None), a.ended_at >= due))
        moments += [(f"{clock}_met", case((met, done))), (f"{clock}_missed", case((missed, due)))]
    at = case(*((f.c.figure == named(name), moment) for name, moment in moments))
    took = case((f.c.figure == named("claimed"), seconds_between(a.claimed_at, a.assigned_at)), else_=0)
    return (
        select(*_place(chosen), a.unit_id, a.tier, f.c.figure, at.label("at"), took.label("seconds"))
        .select_from(assignments.join(chosen, a.case_id == chosen.c.case_id).join(f, true()))
        .where(*scope.matches(), window.holds(at))
    )


ASSIGNMENT_FIGURES = ("assigned", "claimed", "response_met", "response_missed", "resolution_met", "resolution_missed")


def _resolution_facts(window: Window, chosen: Subquery) -> Select[Any]:
    """A resolution (`case.resolved`), with the unit and tier that resolved and the time from
    the report."""
    a, h = assignments.c, history.c
    return (
        select(*_place(chosen), a.unit_id, a.tier, named("resolved").label("figure"), h.at)
        .add_columns(seconds_between(h.at, chosen.c.created_at).label("seconds"))
        .select_from(
            history.join(chosen, h.case_id == chosen.c.case_id).join(
                assignments, a.assignment_id == detail("assignment_id").as_string()
            )
        )
        .where(h.type == "case.resolved", window.holds(h.at))
    )


def _report_facts(window: Window, chosen: Subquery) -> Select[Any]:
    none = named("")
    return (
        select(*_place(chosen), none.label("unit_id"), none.label("tier"), named("reported").label("figure"))
        .add_columns(chosen.c.created_at.label("at"), literal_column("0").label("seconds"))
        .where(window.holds(chosen.c.created_at))
    )


def _history_facts(window: Window, chosen: Subquery) -> Select[Any]:
    """The events the figures count, each up to four facts: what the stats tell apart (closings
    by reason, escalations by reason, first breaches by clock and supervision, reopenings,
    whistles), a closing on time (by its handling, none of the case's assignments ever breached:
    a closing ends every assignment, so any breach came before it), the day's kind (`daily`),
    and what a scorecard credits to a unit (`scorecards.ranked`)."""
    h, f = history.c, _one_of("family", "stats", "on_time", "day", "card")
    reason, clock = detail("reason").as_string(), detail("clock").as_string()
    supervised = detail("supervised").as_boolean()
    closed, escalated = h.type == "case.closed", h.type == "case.escalated"
    stats = case(
        *((and_(closed, reason == r), named(f"closed_{r}")) for r in ("satisfied", "no_answer", "cancelled")),
        *((and_(escalated, reason == r), named(f"escalated_{r}")) for r in ESCALATIONS),
        (h.type == "case.reopened", named("reopened")),
        (h.type == "case.whistled", named("whistled")),
        *((and_(FIRST_BREACH, clock == c, ~supervised), named(f"breached_{c}")) for c in ("response", "resolution")),
        (and_(FIRST_BREACH, supervised), named("supervised")),
    )
    a = assignments.alias("breached")
    ever_breached = exists().where(a.c.case_id == h.case_id, or_(a.c.response_breached, a.c.resolution_breached))
    on_time = case((and_(closed, reason.in_(CLOSING), not_(ever_breached)), named("on_time")))
    day = case(
        (h.type.in_(("case.escalated", "case.whistled")), named("day_escalated")),
        (h.type == "case.resolved", named("day_resolved")),
        (closed, named("day_closed")),
        (FIRST_BREACH, named("day_breached")),
    )
    card = case(
        (h.type == "case.resolved", named("card_resolved")),
        (h.type == "case.reopened", named("card_unsatisfied")),
        (h.type == "case.returned", named("card_returned")),
        (FIRST_BREACH, named("card_breaches")),
        (and_(escalated, reason == "handler"), named("card_escalated")),
        *((and_(closed, reason == r), named(f"card_{r}")) for r in CLOSING),
    )
    figure = case(
        (f.c.family == named("stats"), stats),
        (f.c.family == named("on_time"), on_time),
        (f.c.family == named("day"), day),
        else_=card,
    )
    unit = case((f.c.family == named("card"), func.coalesce(_credited_unit(), named(""))), else_=named(""))
    return (
        select(*_place(chosen), unit.label("unit_id"), named("").label("tier"), figure.label("figure"), h.at)
        .add_columns(literal_column("0").label("seconds"))
        .select_from(history.join(chosen, h.case_id == chosen.c.case_id).join(f, true()))
        .where(h.type.in_(HISTORY_FACTS), or_(h.type != "case.sla_breached", FIRST_BREACH), window.holds(h.at))
    )


HISTORY_FACTS = (
    "case.closed",
    "case.reopened",
    "case.sla_breached",
    "case.escalated",
    "case.whistled",
    "case.resolved",
    "case.returned",
)


def _credited_unit() -> Any:
    """The unit a scorecard credits an event to: the unit that resolved, was reopened with,
    returned or breached; the unit a handler's escalation came from; for a closing, the unit of
    the resolution it closed."""
    h, r = history.c, history.alias("r")
    resolver = (
        select(r.c.details["unit_id"].as_string())
        .where(r.c.case_id == h.case_id, r.c.type == "case.resolved", r.c.id < h.id)
        .order_by(r.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return case(
        (
            h.type.in_(("case.resolved", "case.reopened", "case.returned", "case.sla_breached")),
            detail("unit_id").as_string(),
        ),
        (h.type == "case.escalated", detail("from_unit_id").as_string()),
        (h.type == "case.closed", resolver),
    )


def _place(chosen: Subquery) -> list[Any]:
    return [chosen.c[name] for name in PLACE]


def facts(window: Window, chosen: Subquery, scope: Scope) -> Subquery:
    """Every fact of the chosen cases in the window: its place, category, priority, unit and
    tier, its name (`figure`), when (`at`) and its duration in seconds (0 if none)."""
    return union_all(
        _assignment_facts(window, chosen, scope),
        _resolution_facts(window, chosen),
        _report_facts(window, chosen),
        _history_facts(window, chosen),
    ).subquery("facts")


def grouped(found: Subquery, by: Iterable[str], zone: tzinfo | None = None) -> Select[Any]:
    """The facts counted (and their seconds summed) per figure and per each of `by`: names of
    DIMS, "hour" (the hour a fact falls in) or "day" (its day in `zone`)."""
    columns = [_key(found, name, zone) for name in by]
    return (
        select(*columns, found.c.figure, func.count().label("n"), func.sum(found.c.seconds).label("seconds"))
        .where(found.c.figure.is_not(None))
        .group_by(*columns, found.c.figure)
    )


def _key(found: Subquery, name: str, zone: tzinfo | None) -> Any:
    if name == "hour":
        return epoch_hour(found.c.at).label("hour")
    if name == "day":
        return local_day(found.c.at, str(zone)).label("day")
    return found.c[name]


Tally = dict[tuple[Any, ...], list[Any]]  # (figure, *by) -> [count, seconds (Decimal)]


async def tally(
    s: AsyncConnection,
    window: Window,
    only: Mapping[str, str | None],
    scope: Scope,
    by: tuple[str, ...],
    zone: tzinfo | None = None,
) -> Tally:
    """The window's facts counted per figure and `by` (DIMS, or "day"): the whole hours rolled
    up already from `dispatcher_figure_hours`, the rest from the rows."""
    out: Tally = {}

    def add(rows: Iterable[Any]) -> None:
        for *key, figure, n, seconds in rows:
            found = out.setdefault((figure, *key), [0, Decimal(0)])
            found[0] += int(n)
            found[1] += seconds if isinstance(seconds, Decimal) else Decimal(seconds or 0)  # SQLite's are floats

    rolled, rows = await _split(s, window, scope, zone if "day" in by else None)
    if rolled is not None:
        first, last, stale = rolled
        fh = figure_hours.c
        keys = [fh.hour if name == "day" else fh[name] for name in by]
        query = (
            select(*keys, fh.figure, func.sum(fh.n), func.sum(fh.seconds))
            .where(fh.hour >= first, fh.hour < last, fh.hour.not_in(stale) if stale else true())
            .group_by(*keys, fh.figure)
        )
        for name, value in only.items():
            if value is not None:
                query = query.where(fh[f"{name}_id" if name in ("street", "community") else name] == value)
        found = await s.execute(query)
        if "day" in by:  # an hour's day: `_split` rolls up only hours that lie in one day of `zone`
            at = by.index("day")
            add([*r[:at], hour_start(r[at]).astimezone(zone).date().isoformat(), *r[at + 1 :]] for r in found)
        else:
            add(found)
    for part in rows:
        add(await s.execute(grouped(facts(part, kept(part, only, scope), scope), by, zone)))
    return out


async def _split(
    s: AsyncConnection, window: Window, scope: Scope, zone: tzinfo | None
) -> tuple[tuple[int, int, list[int]] | None, list[Window]]:
    """The hours of the window to read rolled up (first, last, and the stale ones among them,
    which are read from the rows), and the parts to read from the rows."""
    mark = await s.scalar(select(figure_mark.c.until))
    first = -(-(window.since - hour_start(0)) // timedelta(hours=1))  # the first whole hour
    last = min(hour_of(window.until), mark if mark is not None else first)
    if scope.matches() or last <= first or (zone is not None and not _whole_hours(zone, first, last)):
        return None, [window]
    stale = sorted(
        set(
            await s.scalars(select(figure_stale.c.hour).where(figure_stale.c.hour >= first, figure_stale.c.hour < last))
        )
    )
    parts = [Window(window.since, hour_start(first), window.now), Window(hour_start(last), window.until, window.now)]
    parts += [Window(hour_start(h), hour_start(h + 1), window.now) for h in stale]
    return (first, last, stale), [p for p in parts if p.since < p.until]


def _whole_hours(zone: tzinfo, first: int, last: int) -> bool:
    """Whether every hour from `first` to `last` lies in one day of `zone` (its offset from UTC
    is whole hours at both ends: a zone whose offset is half an hour splits its hours' days)."""
    return all(hour_start(h).astimezone(zone).minute == 0 for h in (first, last))


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
        found = await tally(s, window, only, scope, ("tier", "category"))
        # the district's whole figures read every case: no need to join the kept ones
        whole = not scope.matches() and all(v is None for v in only.values())
        claims = select(seconds_between(a.claimed_at, a.assigned_at)).where(window.holds(a.claimed_at))
        if not whole:
            claims = claims.join_from(assignments, chosen, a.case_id == chosen.c.case_id).where(*scope.matches())
        claim_p90 = await nearest_rank(s, claims, _sum(found, "claimed")[0])
        reported = cases.alias("reported") if whole else chosen
        resolve_p90 = await nearest_rank(
            s,
            select(seconds_between(h.at, reported.c.created_at))
            .join_from(history, reported, h.case_id == reported.c.case_id)
            .join(assignments, a.assignment_id == detail("assignment_id").as_string())
            .where(h.type == "case.resolved", window.holds(h.at)),
            _sum(found, "resolved")[0],
        )
        closed_in = await closure(s, window, only, scope)

    def n(figure: str) -> int:
        return _sum(found, figure)[0]

    def clock(name: str) -> dict[str, Any]:
        met = n(f"{name}_met")
        return {"met": met, "counted": met + n(f"{name}_missed"), "rate": rate(met, met + n(f"{name}_missed"))}

    closed_by = {r: n(f"closed_{r}") for r in ("satisfied", "no_answer", "cancelled")}
    visits = {"satisfied": closed_by["satisfied"], "unsatisfied": n("reopened")}
    answered = closed_by["satisfied"] + closed_by["no_answer"]
    by_category: dict[str, dict[str, int]] = {}
    by_tier = {t: {"assigned": 0, "resolved": 0} for t in TIERS}
    for (figure, tier, category), (count, _) in sorted(found.items()):
        if figure in ("reported", "resolved"):
            by_category.setdefault(category, {"reported": 0, "resolved": 0})[figure] += count
        if figure in ("assigned", "resolved") and tier in by_tier:
            by_tier[tier][figure] += count
    return {
        "reported": n("reported"),
        "assigned": n("assigned"),
        "claimed": n("claimed"),
        "resolved": n("resolved"),
        "closed": sum(closed_by.values()),
        "closed_by_reason": closed_by,
        "response": clock("response"),
        "resolution": clock("resolution"),
        "satisfaction": {
            **visits,
            "no_answer": closed_by["no_answer"],
            "rate": rate(visits["satisfied"], visits["satisfied"] + visits["unsatisfied"]),
        },
        "on_time_closure": {"on_time": n("on_time"), "closed": answered, "rate": rate(n("on_time"), answered)},
        "time_to_claim": durations(*_sum(found, "claimed"), claim_p90),
        "time_to_resolve": durations(*_sum(found, "resolved"), resolve_p90),
        "by_category": dict(sorted(by_category.items())),
        "by_tier": by_tier,
        "escalations": {
            "response_breach": n("breached_response"),
            "resolution_breach": n("breached_resolution"),
            **{reason: n(f"escalated_{reason}") for reason in ESCALATIONS},
            "whistled": n("whistled"),
            "supervised": n("supervised"),
        },
        **{
            f"{name}_closure": {**counts, "rate": rate(counts["kept"], counts["started"])}
            for name, counts in closed_in.items()
        },
    }


def _sum(found: Tally, figure: str) -> tuple[int, Any]:
    """The count and seconds of `figure` over every key of `found`."""
    n, seconds = 0, 0
    for key, (count, secs) in found.items():
        if key[0] == figure:
            n, seconds = n + count, seconds + secs
    return n, seconds


def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


# -- the closure rates ------------------------------------------------------------------------
#
# 小事不出网格，大事不出社区: of the cases reported in the window whose first assignment was at the
# grid (at the grid or community), less those cancelled before `until`, those resolved before
# `until` with no assignment given them before `until` at another tier. Each case's part is a sum
# of steps in `until`, each a fact at the moment it steps, kept with the moment of the report:
#   started = [first at the tiers] - [cancelled < until]
#   kept    = [resolved < until] - [resolved and off the tiers < until]
#             - [resolved and cancelled < until] + [resolved, off the tiers and cancelled < until]
# (a moment of "a and b" is the later of the two). A window counts the facts of the cases it
# reported that came before `until`; none comes before its case's report.

CLOSURE_STEPS = {  # the facts of a tier's closure, and their sign
    "started": ("started", 1),
    "started_cancelled": ("started", -1),
    "kept_resolved": ("kept", 1),
    "kept_off": ("kept", -1),
    "kept_cancelled": ("kept", -1),
    "kept_off_cancelled": ("kept", 1),
}
CLOSURES = {"grid": ("grid",), "community": ("grid", "community")}


def _later(*moments: Any) -> Any:
    """The latest of `moments`, or NULL (never) if any is."""
    latest = moments[0]
    for m in moments[1:]:
        latest = case((latest >= m, latest), else_=m)
    return case((or_(*(m.is_(None) for m in moments)), None), else_=latest)


def closure_facts(chosen: Subquery, reported: Window, decided: Window) -> Select[Any]:
    """The closure facts of the chosen cases reported in `reported` that come in `decided`,
    with the moment of their report (`reported_at`)."""
    a, h, c = assignments.c, history.c, chosen.c
    cohort = select(c.case_id).where(reported.holds(c.created_at))
    given = (
        select(a.case_id, func.min(a.seq).label("first"))
        .add_columns(*(func.min(a.assigned_at).filter(a.tier.not_in(t)).label(n) for n, t in CLOSURES.items()))
        .where(a.case_id.in_(cohort))
        .group_by(a.case_id)
        .subquery("given")
    )
    cancel = and_(h.type == "case.closed", detail("reason").as_string() == "cancelled")
    ends = (
        select(h.case_id, func.min(h.at).filter(h.type == "case.resolved").label("resolved"))
        .add_columns(func.min(h.at).filter(cancel).label("cancelled"))
        .where(h.case_id.in_(cohort), h.type.in_(("case.resolved", "case.closed")))
        .group_by(h.case_id)
        .subquery("ends")
    )
    first = assignments.alias("first")
    per_case = (
        select(c.case_id, c.created_at, *_place(chosen), first.c.tier.label("first_tier"), ends.c.resolved)
        .add_columns(ends.c.cancelled, *(given.c[name].label(f"off_{name}") for name in CLOSURES))
        .select_from(
            chosen.join(given, given.c.case_id == c.case_id)
            .join(first, and_(first.c.case_id == c.case_id, first.c.seq == given.c.first))
            .outerjoin(ends, ends.c.case_id == c.case_id)
        )
        .where(reported.holds(c.created_at))
        .subquery("per_case")
    )
    p = per_case.c
    names = [f"{name}_{step}" for name in CLOSURES for step in CLOSURE_STEPS]
    f = _one_of("figure", *names)
    moments = {}
    for name, tiers in CLOSURES.items():
        begun = p.first_tier.in_(tiers)
        for step, moment in (
            ("started", p.created_at),
            ("started_cancelled", p.cancelled),
            ("kept_resolved", p.resolved),
            ("kept_off", _later(p.resolved, p[f"off_{name}"])),
            ("kept_cancelled", _later(p.resolved, p.cancelled)),
            ("kept_off_cancelled", _later(p.resolved, p[f"off_{name}"], p.cancelled)),
        ):
            moments[f"{name}_{step}"] = case((begun, moment))
    at = case(*((f.c.figure == named(n), m) for n, m in moments.items()))
    none = named("")
    return (
        select(*(p[name] for name in PLACE), none.label("unit_id"), none.label("tier"), f.c.figure, at.label("at"))
        .add_columns(literal_column("0").label("seconds"), p.created_at.label("reported_at"))
        .select_from(per_case.join(f, true()))
        .where(decided.holds(at))
    )


async def closure(
    s: AsyncConnection, window: Window, only: Mapping[str, str | None], scope: Scope
) -> dict[str, dict[str, int]]:
    """The window's closure counts per tier: `started` and `kept`. Rolled up: the facts of the
    cases reported in the window's whole hours that came in the hours rolled up; from the rows:
    those of the cases reported in its first, ragged hour, and those that came after the rollup
    or in a stale hour."""
    parts: list[tuple[Window, Window]] = [(window, window)]
    found: dict[str, int] = {}
    rolled, _ = await _split(s, window, scope, None)
    if rolled is not None:
        first, last, stale = rolled
        fh = figure_hours.c
        query = select(fh.figure, func.sum(fh.n)).where(
            fh.figure.in_([f"{n}_{step}" for n in CLOSURES for step in CLOSURE_STEPS]),
            fh.hour >= first,
            fh.hour < last,
            fh.hour.not_in(stale) if stale else true(),
            fh.reported_hour >= first,
        )
        for name, value in only.items():
            if value is not None:
                query = query.where(fh[f"{name}_id" if name in ("street", "community") else name] == value)
        for figure, n in await s.execute(query.group_by(fh.figure)):
            found[figure] = found.get(figure, 0) + int(n)
        since, now = hour_start(first), window.now
        later = [
            Window(hour_start(last), window.until, now),
            *(Window(hour_start(h), hour_start(h + 1), now) for h in stale),
        ]
        parts = [(Window(window.since, since, now), window)]
        parts += [(Window(since, window.until, now), d) for d in later if d.since < d.until]
    for reported, decided in parts:
        if reported.since >= reported.until:
            continue
        chosen = kept(decided, only, scope, changed=True)
        facts_of = closure_facts(chosen, reported, decided).subquery()
        query = select(facts_of.c.figure, func.count()).where(facts_of.c.at.is_not(None)).group_by(facts_of.c.figure)
        for figure, n in await s.execute(query):
            found[figure] = found.get(figure, 0) + int(n)
    out = {name: {"started": 0, "kept": 0} for name in CLOSURES}
    for figure, n in found.items():
        name, step = figure.split("_", 1)
        what, sign = CLOSURE_STEPS[step]
        out[name][what] += sign * n
    return out


DAILY = {
    "reported": "opened",
    "day_escalated": "escalated",
    "day_resolved": "resolved",
    "day_closed": "closed",
    "day_breached": "breached",
}


async def daily(
    db: Database, window: Window, only: Mapping[str, str | None], scope: Scope, zone: tzinfo
) -> list[dict[str, Any]]:
    """Per day of the policy's time zone that the window touches: cases opened (reported),
    escalated (`case.escalated`, any reason, and `case.whistled`), resolved (`case.resolved`),
    closed (`case.closed`, any reason) and breached (first breaches, supervised or not)."""
    first, last = (
        window.since.astimezone(zone).date(),
        (window.until - timedelta(microseconds=1)).astimezone(zone).date(),
    )
    days = {
        (first + timedelta(days=n)).isoformat(): dict.fromkeys(DAILY.values(), 0)
        for n in range((last - first).days + 1)
    }
    async with reading(db) as s:
        found = await tally(s, window, only, scope, ("day",), zone)
    for (figure, day), (n, _) in found.items():
        if figure in DAILY:
            days[day][DAILY[figure]] += n
    return [{"day": d, **counts} for d, counts in days.items()]
