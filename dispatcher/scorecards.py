"""红星考评: the scorecards that rank grids, communities, streets and departments over a window by
their assignments' clocks, their resolutions' visits and what they sent up or returned, worked
out in the database as the figures are (dispatcher/figures.py; definitions in
docs/architecture.md, "Figures")."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Subquery, and_, case, func, select

from dispatcher.figures import CLOSING, FIRST_BREACH, Scope, Window, clock_counts, detail, kept, rate, reading, trail
from dispatcher.tables import assignments, history
from services.storage.db import Database

_CREDITED = ("case.resolved", "case.reopened", "case.returned", "case.sla_breached", "case.escalated", "case.closed")


async def ranked(db: Database, window: Window, units: Sequence[Any], weights: Any) -> list[dict[str, Any]]:
    """红星考评: each of `units` with its figures in the window and its score, ranked. A unit's
    figures: its assignments' response and resolution clocks decided in the window (as in
    `stats`), the resolutions it made, the visits after them (a closing goes to the unit whose
    resolution it closed, a reopening to the unit it reopened with), its first breaches, and the
    cases it sent up (上报) or returned (退单)."""
    ours = {u.id for u in units}
    figures = {u.id: _blank() for u in units}
    chosen = kept(window, {}, Scope())
    async with reading(db) as s:
        for r in await s.execute(clock_counts(window, chosen, Scope(), assignments.c.unit_id)):
            if r.key in ours:
                f = figures[r.key]
                f["assigned"] += r.assigned
                for clock in ("response", "resolution"):
                    f[f"{clock}_met"] += getattr(r, f"{clock}_met")
                    f[f"{clock}_counted"] += getattr(r, f"{clock}_met") + getattr(r, f"{clock}_missed")
        credited = _credited(window, chosen).subquery()
        grouped = select(credited.c.unit, credited.c.figure, func.count()).group_by(credited.c.unit, credited.c.figure)
        for unit, figure, n in await s.execute(grouped):
            if unit in ours and figure is not None:
                figures[unit][figure] += n
    rows = []
    for u in units:
        f = figures[u.id]
        rates = {
            "response": rate(f["response_met"], f["response_counted"]),
            "resolution": rate(f["resolution_met"], f["resolution_counted"]),
            "satisfaction": rate(f["satisfied"], f["satisfied"] + f["unsatisfied"]),
        }
        weighed = [(getattr(weights, r), v) for r, v in rates.items() if v is not None and getattr(weights, r) > 0]
        total = sum(w for w, _ in weighed)
        score = round(100 * sum(w * v for w, v in weighed) / total, 2) if total else None
        if f["assigned"] < weights.min_assignments:
            score = None
        rows.append(
            {"unit_id": u.id, "unit_name": u.name, "unit_name_zh": u.name_zh, "kind": u.kind.value, "score": score, **f}
            | {f"{r}_rate": v for r, v in rates.items()}
        )
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), -r["assigned"], r["unit_id"]))
    for n, r in enumerate(rows, 1):
        r["rank"] = n if r["score"] is not None else None
    return rows


def _credited(window: Window, chosen: Subquery) -> Select[Any]:
    """Each event of the window a scorecard counts: the unit it counts for and the figure."""
    h = history.c
    reason = detail("reason").as_string()
    r = history.alias("r")
    resolver = (
        select(r.c.details["unit_id"].as_string())
        .where(r.c.case_id == h.case_id, r.c.type == "case.resolved", r.c.id < h.id)
        .order_by(r.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    unit = case(
        (
            h.type.in_(("case.resolved", "case.reopened", "case.returned", "case.sla_breached")),
            detail("unit_id").as_string(),
        ),
        (h.type == "case.escalated", detail("from_unit_id").as_string()),
        else_=resolver,
    )
    figure = case(
        (h.type == "case.resolved", "resolved"),
        (h.type == "case.reopened", "unsatisfied"),
        (h.type == "case.returned", "returned"),
        (FIRST_BREACH, "breaches"),
        (and_(h.type == "case.escalated", reason == "handler"), "escalated"),
        (and_(h.type == "case.closed", reason.in_(CLOSING)), reason),
    )
    return select(unit.label("unit"), figure.label("figure")).where(*trail(chosen, *_CREDITED), window.holds(h.at))


def _blank() -> dict[str, int]:
    names = ("assigned", "response_met", "response_counted", "resolution_met", "resolution_counted", "resolved")
    return dict.fromkeys((*names, "satisfied", "unsatisfied", "no_answer", "breaches", "escalated", "returned"), 0)
