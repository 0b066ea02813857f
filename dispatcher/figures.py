"""The figures ops steer by (三率, closure rates, escalations by cause) over a window, worked
out from the dispatcher's own rows: its cases, their assignments and the history it recorded.

Why in Python and not in SQL: each figure is decided per assignment or per case at one moment
(a response clock is met at its claim, missed at its limit, or never decided when the ticket
ended unclaimed before its limit), which reads plainly here and is the same on SQLite and
PostgreSQL. The definitions are in docs/architecture.md ("Figures"); keep the two in step.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

TIERS = ("grid", "community", "street", "bureau")
CLOSING = ("satisfied", "no_answer")  # a cancelled case was withdrawn, not closed by its handling


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    now: datetime

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until


@dataclass(frozen=True)
class Scope:
    """Narrowing by the unit or tier of an assignment: assignment figures count the matching
    assignments only; case figures count the cases with at least one matching assignment."""

    unit: str | None = None
    tier: str | None = None

    def matches(self, a: Any) -> bool:
        return (self.unit is None or a.unit_id == self.unit) and (self.tier is None or a.tier == self.tier)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def p90(values: Sequence[float]) -> float | None:
    """The nearest-rank 90th percentile: the smallest value at least 90% of the values reach."""
    if not values:
        return None
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def durations(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "average_seconds": round(sum(values) / len(values), 3) if values else None,
        "p90_seconds": p90(values),
    }


def _ended(history: Iterable[Any]) -> dict[str, datetime]:
    """When each assignment ended unresolved (its `case.unassigned`)."""
    return {h.details["assignment_id"]: h.at for h in history if h.type == "case.unassigned"}


def clock_outcome(
    assignment: Any, clock: str, ended_at: datetime | None, window: Window
) -> tuple[bool, datetime] | None:
    """(met, when it was decided) for one clock of one assignment, or None while undecided or
    never decided. Met: the claim (resolution: the resolution) came at or before the limit,
    decided then. Missed: the limit passed with the ticket still unclaimed (unresolved) and not
    ended before it, decided at the limit, once the limit is past."""
    due = assignment.response_due if clock == "response" else assignment.resolution_due
    done = assignment.claimed_at if clock == "response" else assignment.resolved_at
    if done is not None and done <= due:
        return True, done
    if due > window.now or (ended_at is not None and ended_at < due):
        return None
    return False, due


def _scoped(
    cases: Sequence[Any], given: Sequence[Any], history: Sequence[Any], scope: Scope
) -> tuple[dict[str, list[Any]], list[Any], list[Any], list[Any]]:
    """Assignments per case in order; the cases, assignments and history `scope` keeps."""
    by_case: dict[str, list[Any]] = {}
    for a in sorted(given, key=lambda a: (a.case_id, a.seq)):
        by_case.setdefault(a.case_id, []).append(a)
    in_scope = {c.case_id for c in cases if any(scope.matches(a) for a in by_case.get(c.case_id, []))}
    kept = [c for c in cases if c.case_id in in_scope]
    mine = [a for a in given if a.case_id in in_scope and scope.matches(a)]
    trail = sorted((h for h in history if h.case_id in in_scope), key=lambda h: h.id)
    return by_case, kept, mine, trail


DAILY = ("opened", "escalated", "resolved", "closed", "breached")


def daily(
    cases: Sequence[Any], given: Sequence[Any], history: Sequence[Any], window: Window, scope: Scope, zone: tzinfo
) -> list[dict[str, Any]]:
    """Per day of the policy's time zone that the window touches: cases opened (reported),
    escalated (`case.escalated`, any reason, and `case.whistled`), resolved (`case.resolved`),
    closed (`case.closed`, any reason) and breached (first breaches, supervised or not)."""
    _, kept, _, trail = _scoped(cases, given, history, scope)
    first, last = (
        window.since.astimezone(zone).date(),
        (window.until - timedelta(microseconds=1)).astimezone(zone).date(),
    )
    days = {first + timedelta(days=n): dict.fromkeys(DAILY, 0) for n in range((last - first).days + 1)}
    kinds = {
        "case.escalated": "escalated",
        "case.whistled": "escalated",
        "case.resolved": "resolved",
        "case.closed": "closed",
        "case.sla_breached": "breached",
    }
    moments = [(c.created_at, "opened") for c in kept]
    moments += [(h.at, kinds[h.type]) for h in trail if h.type in kinds and not h.details.get("repeat")]
    for at, kind in moments:
        if window.holds(at):
            days[at.astimezone(zone).date()][kind] += 1
    return [{"day": d.isoformat(), **counts} for d, counts in days.items()]


def stats(cases: Sequence[Any], given: Sequence[Any], history: Sequence[Any], window: Window, scope: Scope) -> dict:
    """The window's figures. `cases`, `given` (assignments) and `history` are rows of the
    dispatcher's tables, already narrowed by the case filters (street, community, category,
    priority), and holding at least every case with anything in the window."""
    by_case, kept, mine, trail = _scoped(cases, given, history, scope)
    tier_of = {a.assignment_id: a.tier for a in given}
    created = {c.case_id: c.created_at for c in kept}
    ended = _ended(trail)
    seen = [h for h in trail if window.holds(h.at)]

    rates: dict[str, dict[str, Any]] = {}
    for clock in ("response", "resolution"):
        decided = [clock_outcome(a, clock, ended.get(a.assignment_id), window) for a in mine]
        counted = [met for o in decided if o is not None and window.holds(o[1]) for met in (o[0],)]
        rates[clock] = {"met": sum(counted), "counted": len(counted), "rate": rate(sum(counted), len(counted))}

    resolutions = [h for h in seen if h.type == "case.resolved"]
    closings = [h for h in seen if h.type == "case.closed"]
    closed_by = Counter(h.details["reason"] for h in closings)
    visits = Counter(h.details["reason"] for h in closings if h.details["reason"] in CLOSING)
    visits["unsatisfied"] = sum(1 for h in seen if h.type == "case.reopened")
    first_breach: dict[str, int] = {}
    for h in trail:
        if h.type == "case.sla_breached":
            first_breach.setdefault(h.case_id, h.id)
    on_time = sum(
        1 for h in closings if h.details["reason"] in CLOSING and first_breach.get(h.case_id, math.inf) > h.id
    )
    escalated = Counter(h.details["reason"] for h in seen if h.type == "case.escalated")
    first_breaches = [h for h in seen if h.type == "case.sla_breached" and not h.details.get("repeat")]
    reported = [c for c in kept if window.holds(c.created_at)]
    claimed = [a for a in mine if window.holds(a.claimed_at)]

    by_category: dict[str, dict[str, int]] = {}
    for c in reported:
        by_category.setdefault(c.category, {"reported": 0, "resolved": 0})["reported"] += 1
    category_of = {c.case_id: c.category for c in kept}
    for h in resolutions:
        by_category.setdefault(category_of[h.case_id], {"reported": 0, "resolved": 0})["resolved"] += 1
    by_tier = {t: {"assigned": 0, "resolved": 0} for t in TIERS}
    for a in mine:
        if window.holds(a.assigned_at):
            by_tier[a.tier]["assigned"] += 1
    for h in resolutions:
        by_tier[tier_of[h.details["assignment_id"]]]["resolved"] += 1

    return {
        "reported": len(reported),
        "assigned": sum(1 for a in mine if window.holds(a.assigned_at)),
        "claimed": len(claimed),
        "resolved": len(resolutions),
        "closed": len(closings),
        "closed_by_reason": {r: closed_by.get(r, 0) for r in ("satisfied", "no_answer", "cancelled")},
        "response": rates["response"],
        "resolution": rates["resolution"],
        "satisfaction": {
            "satisfied": visits["satisfied"],
            "unsatisfied": visits["unsatisfied"],
            "no_answer": visits["no_answer"],
            "rate": rate(visits["satisfied"], visits["satisfied"] + visits["unsatisfied"]),
        },
        "on_time_closure": {
            "on_time": on_time,
            "closed": sum(visits[r] for r in CLOSING),
            "rate": rate(on_time, sum(visits[r] for r in CLOSING)),
        },
        "time_to_claim": durations([(a.claimed_at - a.assigned_at).total_seconds() for a in claimed]),
        "time_to_resolve": durations([(h.at - created[h.case_id]).total_seconds() for h in resolutions]),
        "by_category": dict(sorted(by_category.items())),
        "by_tier": by_tier,
        "escalations": {
            "response_breach": sum(
                1 for h in first_breaches if not h.details["supervised"] and h.details["clock"] == "response"
            ),
            "resolution_breach": sum(
                1 for h in first_breaches if not h.details["supervised"] and h.details["clock"] == "resolution"
            ),
            "handler": escalated.get("handler", 0),
            "returned": escalated.get("returned", 0),
            "reassigned": escalated.get("reassigned", 0),
            "whistled": sum(1 for h in seen if h.type == "case.whistled"),
            "supervised": sum(1 for h in first_breaches if h.details["supervised"]),
        },
        "grid_closure": _closure(reported, by_case, trail, window, ("grid",)),
        "community_closure": _closure(reported, by_case, trail, window, ("grid", "community")),
    }


def _closure(
    reported: Sequence[Any], by_case: dict[str, list[Any]], trail: Sequence[Any], window: Window, tiers: tuple[str, ...]
) -> dict[str, Any]:
    """Of the cases reported in the window that started at one of `tiers` (leaving out those
    withdrawn before `until`), those resolved before `until` with every assignment given them
    before `until` at one of `tiers`."""
    before = [h for h in trail if h.at < window.until]
    cancelled = {h.case_id for h in before if h.type == "case.closed" and h.details["reason"] == "cancelled"}
    resolved = {h.case_id for h in before if h.type == "case.resolved"}
    started = [c for c in reported if by_case[c.case_id][0].tier in tiers and c.case_id not in cancelled]
    kept = [
        c
        for c in started
        if c.case_id in resolved and all(a.tier in tiers for a in by_case[c.case_id] if a.assigned_at < window.until)
    ]
    return {"kept": len(kept), "started": len(started), "rate": rate(len(kept), len(started))}


def scorecards(
    given: Sequence[Any], history: Sequence[Any], window: Window, units: Sequence[Any], weights: Any
) -> list[dict[str, Any]]:
    """红星考评: each of `units` with its figures in the window and its score, ranked. A unit's
    figures: its assignments' response and resolution clocks decided in the window (as in
    `stats`), the resolutions it made, the visits after them (a closing goes to the unit whose
    resolution it closed, a reopening to the unit it reopened with), its first breaches, and the
    cases it sent up (上报) or returned (退单)."""
    ours = {u.id for u in units}
    figures = {u.id: _blank() for u in units}
    trail = sorted(history, key=lambda h: h.id)
    ended = _ended(trail)
    for a in given:
        if a.unit_id not in ours:
            continue
        f = figures[a.unit_id]
        f["assigned"] += window.holds(a.assigned_at)
        for clock in ("response", "resolution"):
            outcome = clock_outcome(a, clock, ended.get(a.assignment_id), window)
            if outcome is not None and window.holds(outcome[1]):
                f[f"{clock}_counted"] += 1
                f[f"{clock}_met"] += outcome[0]
    resolver: dict[str, str] = {}
    for h in trail:
        unit = _credited(h, resolver)
        if h.type == "case.resolved":
            resolver[h.case_id] = h.details["unit_id"]
        if unit in ours and window.holds(h.at):
            figures[unit][_COUNTED[h.type] if h.type in _COUNTED else h.details["reason"]] += 1
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


_COUNTED = {
    "case.resolved": "resolved",
    "case.reopened": "unsatisfied",
    "case.sla_breached": "breaches",
    "case.escalated": "escalated",
    "case.returned": "returned",
}


def _credited(h: Any, resolver: dict[str, str]) -> str | None:
    """The unit an event counts for on a scorecard, if any."""
    d = h.details
    match h.type:
        case "case.resolved" | "case.reopened" | "case.returned":
            return str(d["unit_id"])
        case "case.sla_breached" if not d.get("repeat"):
            return str(d["unit_id"])
        case "case.escalated" if d["reason"] == "handler":
            return str(d["from_unit_id"])
        case "case.closed" if d["reason"] in CLOSING:
            return resolver.get(h.case_id)
    return None


def _blank() -> dict[str, int]:
    names = ("assigned", "response_met", "response_counted", "resolution_met", "resolution_counted", "resolved")
    return dict.fromkeys((*names, "satisfied", "unsatisfied", "no_answer", "breaches", "escalated", "returned"), 0)
