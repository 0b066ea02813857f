"""红星考评: the scorecards that rank grids, communities, streets and departments over a window by
their assignments' clocks, their resolutions' visits and what they sent up or returned, counted
from the figures' facts per unit (dispatcher/figures.py; definitions in docs/architecture.md,
"Figures")."""

from collections.abc import Sequence
from typing import Any

from dispatcher.figures import Scope, Window, rate, reading, tally
from services.storage.db import Database

# a unit's figures, and the facts they count (dispatcher/figures.py)
CREDITED = {
    "assigned": "assigned",
    "card_resolved": "resolved",
    "card_satisfied": "satisfied",
    "card_unsatisfied": "unsatisfied",
    "card_no_answer": "no_answer",
    "card_breaches": "breaches",
    "card_escalated": "escalated",
    "card_returned": "returned",
}


async def ranked(db: Database, window: Window, units: Sequence[Any], weights: Any) -> list[dict[str, Any]]:
    """红星考评: each of `units` with its figures in the window and its score, ranked. A unit's
    figures: its assignments' response and resolution clocks decided in the window (as in
    `stats`), the resolutions it made, the visits after them (a closing goes to the unit whose
    resolution it closed, a reopening to the unit it reopened with), its first breaches, and the
    cases it sent up (上报) or returned (退单)."""
    figures = {u.id: _blank() for u in units}
    async with reading(db) as s:
        found = await tally(s, window, {}, Scope(), ("unit_id",))
    for (figure, unit), (n, _) in found.items():
        f = figures.get(unit)
        if f is None:
            continue
        if figure in CREDITED:
            f[CREDITED[figure]] += n
        for clock in ("response", "resolution"):
            if figure in (f"{clock}_met", f"{clock}_missed"):
                f[f"{clock}_counted"] += n
                f[f"{clock}_met"] += n if figure.endswith("_met") else 0
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


def _blank() -> dict[str, int]:
    names = ("assigned", "response_met", "response_counted", "resolution_met", "resolution_counted", "resolved")
    return dict.fromkeys((*names, "satisfied", "unsatisfied", "no_answer", "breaches", "escalated", "returned"), 0)
