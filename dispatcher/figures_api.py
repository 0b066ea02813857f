"""Ops figures over a window: `/v1/ops/stats`, `/v1/ops/stats/daily`, `/v1/ops/scorecards`.
The rows are read here, the figures are worked out in `dispatcher/figures.py`."""

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import or_, select

from dispatcher.figures import Scope, Window, daily, scorecards, stats
from dispatcher.tables import assignments, cases, history
from services.district.clock import Clock
from services.district.events import Priority, Tier
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.policy import Policy
from services.district.text import Identifier
from services.runtime.metrics import Metrics, Probe
from services.storage.bulk import among
from services.storage.db import Database
from services.web.auth import OpsDep
from services.web.errors import Invalid

FIGURE_EVENTS = (
    "case.unassigned",
    "case.resolved",
    "case.closed",
    "case.reopened",
    "case.sla_breached",
    "case.escalated",
    "case.whistled",
)


def window_of(since: datetime | None, until: datetime | None, now: datetime, policy: Policy) -> Window:
    """The window asked for, in the policy's time zone: both ends need a zone of their own
    (a bare time would be read in whichever zone the server happens to run), `until` comes
    after `since`; by default the 30 days up to now."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise Invalid(f"{name} needs a time zone, e.g. 2026-11-01T00:00:00+08:00", loc=("query", name))
    zone = policy.calendar.zone
    until = (until or now).astimezone(zone)
    since = (since or until - timedelta(days=30)).astimezone(zone)
    if until <= since:
        raise Invalid("until must come after since", loc=("query", "until"))
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
            raise Invalid(f"no {name} {value!r} in the jurisdiction", loc=("query", name))


def _has(lookup: Any, value: str) -> bool:
    try:
        lookup(value)
    except KeyError:
        return False
    return True


Since = Annotated[datetime | None, Query(description="from, with a time zone (default: 30 days ago)")]
Until = Annotated[datetime | None, Query(description="to, excluded, with a time zone (default: now)")]
Street = Annotated[Identifier | None, Query(description="street id, e.g. S1")]
CommunityQ = Annotated[Identifier | None, Query(description="community id, e.g. C2")]
UnitQ = Annotated[Identifier | None, Query(description="a unit that held an assignment")]
TierQ = Annotated[Tier | None, Query(description="the tier of an assignment")]


async def rows(db: Database, window: Window, **only: Any) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any]]:
    """The cases the filters keep that may have anything in the window (every case still
    open, and the closed ones touched since `since`), their assignments and history."""
    query = select(cases.c.case_id, cases.c.category, cases.c.created_at).where(
        cases.c.created_at < window.until, or_(~cases.c.closed, cases.c.updated_at >= window.since)
    )
    for name, value in only.items():
        if value is not None:
            query = query.where(cases.c[f"{name}_id" if name in ("street", "community") else name] == value)
    async with db.sessions() as s:
        kept = (await s.execute(query)).all()
        ids = [r.case_id for r in kept]
        if not ids:
            return kept, [], []
        given = (await s.execute(select(assignments).where(among(s, assignments.c.case_id, ids)))).all()
        picked = among(s, history.c.case_id, ids), history.c.type.in_(FIGURE_EVENTS)
        trail = (await s.execute(select(history).where(*picked))).all()
    return kept, given, trail


RATES = ("response", "resolution", "satisfaction", "on_time_closure", "grid_closure", "community_closure")


def rates_probe(db: Database, clock: Clock, policy: Policy, metrics: Metrics, every: float = 60.0) -> Probe:
    """The district's rates over the last 30 days as gauges, for the operators' dashboard:
    worked out as `/v1/ops/stats` works them out, at most once a minute however often
    Prometheus scrapes (a window's figures read every case touched in it)."""
    last = [float("-inf")]

    async def probe() -> None:
        if time.monotonic() - last[0] < every:
            return
        last[0] = time.monotonic()
        window = window_of(None, None, clock.now(), policy)
        figures = stats(*await rows(db, window), window, Scope())
        for name in RATES:
            value = figures[name]["rate"]
            metrics.child(metrics.rates, (name,)).set(float("nan") if value is None else value)

    return probe


def router(db: Database, clock: Clock, j: Jurisdiction, policy: Policy) -> APIRouter:
    api = APIRouter(prefix="/v1/ops", tags=["ops"])

    @dataclass(frozen=True)
    class Selection:
        """A window's rows as the filters keep them, and the assignments the figures count."""

        window: Window
        found: tuple[Sequence[Any], Sequence[Any], Sequence[Any]]
        scope: Scope

    async def selection(
        since: Since = None,
        until: Until = None,
        street: Street = None,
        community: CommunityQ = None,
        unit: UnitQ = None,
        category: Annotated[Identifier | None, Query()] = None,
        tier: TierQ = None,
        priority: Annotated[Priority | None, Query()] = None,
    ) -> Selection:
        window = window_of(since, until, clock.now(), policy)
        check_places(j, policy, street=street, community=community, unit=unit, category=category)
        found = await rows(db, window, street=street, community=community, category=category, priority=priority)
        return Selection(window, found, Scope(unit=unit, tier=tier and tier.value))

    Selected = Annotated[Selection, Depends(selection)]

    @api.get("/stats")
    async def figures(_: OpsDep, chosen: Selected) -> dict[str, Any]:
        """The three rates (三率), closure rates (小事不出网格，大事不出社区), counts, times and
        escalations by cause for a window; each figure as defined in docs/architecture.md
        ("Figures")."""
        window = chosen.window
        return {"since": window.since, "until": window.until, **stats(*chosen.found, window, chosen.scope)}

    @api.get("/stats/daily")
    async def figures_per_day(_: OpsDep, chosen: Selected) -> dict[str, Any]:
        """Per day of the policy's time zone, for charts: cases opened, escalated, resolved,
        closed and breached (docs/architecture.md, "Figures")."""
        window, zone = chosen.window, policy.calendar.zone
        return {"since": window.since, "until": window.until, "days": daily(*chosen.found, window, chosen.scope, zone)}

    @api.get(
        "/scorecards",
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "ranked units"}},
    )
    async def scorecard(
        _: OpsDep,
        request: Request,
        kind: Annotated[UnitKind, Query(description="which units to rank")],
        since: Since = None,
        until: Until = None,
        format: Annotated[Literal["json", "csv"] | None, Query(description="csv, or send Accept: text/csv")] = None,
    ) -> Any:
        """红星考评: the units of one kind ranked by their score (the weighted mean of their
        response, resolution and satisfaction rates, weights in the policy's `scorecard`), with
        each unit's figures; as CSV for a spreadsheet with `Accept: text/csv` or `format=csv`."""
        window = window_of(since, until, clock.now(), policy)
        units = [u for u in j.units if u.kind is kind]
        _cases, given, trail = await rows(db, window)
        ranked = scorecards(given, trail, window, units, policy.scorecard)
        if format == "csv" or (format is None and "text/csv" in request.headers.get("accept", "")):
            return _csv(ranked, f"scorecards-{kind.value}-{window.since.date()}-{window.until.date()}.csv")
        return {"since": window.since, "until": window.until, "kind": kind.value, "units": ranked}

    return api


CSV_COLUMNS = (
    "rank",
    "unit_id",
    "unit_name",
    "kind",
    "score",
    "assigned",
    "response_met",
    "response_counted",
    "response_rate",
    "resolution_met",
    "resolution_counted",
    "resolution_rate",
    "resolved",
    "satisfied",
    "unsatisfied",
    "no_answer",
    "satisfaction_rate",
    "breaches",
    "escalated",
    "returned",
)


def _csv(ranked: list[dict[str, Any]], filename: str) -> Response:
    """UTF-8 with a byte-order mark, so a spreadsheet shows the units' Chinese names."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(ranked)
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
