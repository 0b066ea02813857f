"""The dispatcher's ops API, routes only: the satisfaction rate, breaches and a case's routing
history (`router`), and the figures over a window (`figures_router`). What they read is in
`dispatcher/usecases.py`, their answers' types in `dispatcher/schemas.py`."""

import csv
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from dispatcher import figures as figures_of
from dispatcher import scorecards, usecases
from dispatcher.board import watch as board_watch
from dispatcher.figures import Scope, Window
from dispatcher.schemas import (
    AcknowledgeBody,
    Acknowledged,
    Breach,
    CommunityQ,
    OpsCase,
    Satisfaction,
    Since,
    Street,
    TierQ,
    UnitQ,
    Until,
    Watch,
)
from dispatcher.usecases import check_places, window_of
from services.district.clock import Clock
from services.district.events import Priority
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.policy import Policy
from services.district.text import Identifier, Moment
from services.storage.db import Database
from services.web.auth import OpsDep
from services.web.openapi import problem
from services.web.parts import bind, part


@dataclass(frozen=True)
class Parts:
    """What the ops routes read: the dispatcher's database, the clock, the district, the policy."""

    db: Database
    clock: Clock
    j: Jurisdiction
    policy: Policy


PartsDep = Annotated[Parts, Depends(part("dispatcher"))]
api = APIRouter(prefix="/v1/ops", tags=["ops"])
figures_api = APIRouter(prefix="/v1/ops", tags=["ops"])


def router(db: Database, clock: Clock, j: Jurisdiction, policy: Policy) -> APIRouter:
    """The satisfaction rate, breaches and a case's routing history."""
    return bind(api, dispatcher=Parts(db, clock, j, policy))


def figures_router(db: Database, clock: Clock, j: Jurisdiction, policy: Policy) -> APIRouter:
    """The figures over a window: stats, per day, scorecards."""
    return bind(figures_api, dispatcher=Parts(db, clock, j, policy))


@api.get("/satisfaction", response_model=Satisfaction)
async def satisfaction(
    _: OpsDep,
    ops: PartsDep,
    since: Annotated[Moment | None, Query(description="from, with a time zone (default: 30 days ago)")] = None,
    until: Annotated[Moment | None, Query(description="to, with a time zone (default: now)")] = None,
    street: Annotated[Identifier | None, Query(description="street id, e.g. S1")] = None,
    community: Annotated[Identifier | None, Query(description="community id, e.g. C2")] = None,
    unit: Annotated[Identifier | None, Query(description="the unit that resolved the case")] = None,
    category: Annotated[Identifier | None, Query()] = None,
) -> dict[str, Any]:
    """The satisfaction rate (满意率): outcomes of satisfaction visits in the period, overall
    and per unit that resolved the case. A case reopened and resolved again counts each visit."""
    only = {"street": street, "community": community, "unit": unit, "category": category}
    return await usecases.satisfaction(ops.db, ops.j, ops.clock.now(), since, until, **only)


@api.get("/breaches", response_model=list[Breach])
async def breaches(
    _: OpsDep,
    ops: PartsDep,
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
        Moment | None, Query(description="state=all: from, with a time zone (default: 30 days ago)")
    ] = None,
    until: Annotated[
        Moment | None, Query(description="state=all: to, excluded, with a time zone (default: now)")
    ] = None,
) -> list[dict[str, Any]]:
    """`current` (the default): cases past a limit right now: an open assignment past its
    response or resolution limit, including cases under supervision (督办) at the top tier,
    most late first. `all`: every breach recorded in the window (a breach below the bureau
    escalates the case at once, so it is late "now" for no time at all), newest first, with
    the unit that missed, the clock, how late it was when recorded, what followed, and when
    the clock was met after all."""
    only = {"street": street, "community": community, "unit": unit, "category": category}
    check_places(ops.j, ops.policy, **only)
    if state == "all":
        window = window_of(since, until, ops.clock.now(), ops.policy)
        return await usecases.breach_history(
            ops.db, window, limit, street=street, community=community, unit=unit, category=category
        )
    return await usecases.breaches_now(ops.db, ops.clock.now(), limit, **only)


@api.get("/watch", response_model=Watch)
async def watch(
    _: OpsDep,
    ops: PartsDep,
    since: Annotated[
        Moment | None, Query(description="breaches from, with a time zone (default: 24 hours ago)")
    ] = None,
    street: Street = None,
    community: CommunityQ = None,
    category: Annotated[Identifier | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The board's cases, one row per case (not per breach): each case that breached a limit
    since `since` (at most 30 days back) or is late now, with its category, place, an excerpt of its description,
    the path it took, what it waits on, how late it is now, and whether ops took up its
    supervision. `live`: those that need ops' eye (late now, or not yet taken up by the unit
    holding them since their last breach); `done`: resolved, closed, or taken up, with when."""
    now = ops.clock.now()
    window = window_of(since, None, now, ops.policy) if since else None
    check_places(ops.j, ops.policy, street=street, community=community, category=category)
    start = max(
        window.since if window else now - timedelta(hours=24), now - timedelta(days=30)
    )  # a board, not an archive
    return await board_watch.watch(ops.db, now, start, limit, street=street, community=community, category=category)


@api.post(
    "/cases/{case_id}/acknowledge",
    response_model=Acknowledged,
    responses={
        404: problem("no case with this id"),
        409: problem("the case is not under supervision, or another officer took it up first (who and when)"),
    },
)
async def acknowledge(case_id: str, body: AcknowledgeBody, who: OpsDep, ops: PartsDep) -> dict[str, Any]:
    """Take up a case under supervision (督办): ops record that an officer is on it, by name,
    once per supervision; the board shows who and when. Ops act on no ticket: the unit holding
    the case still claims and resolves it, and the supervision alerts repeat until it does."""
    return await board_watch.acknowledge(ops.db, case_id, who.name, body.note or None, ops.clock.now())


@api.get("/cases/{case_id}", response_model=OpsCase, responses={404: problem("no case with this id")})
async def case_history(case_id: str, _: OpsDep, ops: PartsDep) -> dict[str, Any]:
    """The full routing history: every assignment, clock, warning, breach, escalation,
    return and whistle."""
    return await usecases.case_history(ops.db, case_id)


@dataclass(frozen=True)
class Selection:
    """The window, the case filters and the assignments the figures count."""

    window: Window
    only: dict[str, str | None]
    scope: Scope


async def selection(
    ops: PartsDep,
    since: Since = None,
    until: Until = None,
    street: Street = None,
    community: CommunityQ = None,
    unit: UnitQ = None,
    category: Annotated[Identifier | None, Query()] = None,
    tier: TierQ = None,
    priority: Annotated[Priority | None, Query()] = None,
) -> Selection:
    window = window_of(since, until, ops.clock.now(), ops.policy)
    check_places(ops.j, ops.policy, street=street, community=community, unit=unit, category=category)
    only = {"street": street, "community": community, "category": category, "priority": priority}
    return Selection(window, only, Scope(unit=unit, tier=tier and tier.value))


Selected = Annotated[Selection, Depends(selection)]


@figures_api.get("/stats")
async def figures(_: OpsDep, chosen: Selected, ops: PartsDep) -> dict[str, Any]:
    """The three rates (三率), closure rates (小事不出网格，大事不出社区), counts, times and
    escalations by cause for a window; each figure as defined in docs/architecture.md
    ("Figures")."""
    window = chosen.window
    found = await figures_of.stats(ops.db, window, chosen.only, chosen.scope)
    return {"since": window.since, "until": window.until, **found}


@figures_api.get("/stats/daily")
async def figures_per_day(_: OpsDep, chosen: Selected, ops: PartsDep) -> dict[str, Any]:
    """Per day of the policy's time zone, for charts: cases opened, escalated, resolved,
    closed and breached (docs/architecture.md, "Figures")."""
    window, zone = chosen.window, ops.policy.calendar.zone
    days = await figures_of.daily(ops.db, window, chosen.only, chosen.scope, zone)
    return {"since": window.since, "until": window.until, "days": days}


@figures_api.get(
    "/scorecards",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "ranked units"}},
)
async def scorecard(
    _: OpsDep,
    ops: PartsDep,
    request: Request,
    kind: Annotated[UnitKind, Query(description="which units to rank")],
    since: Since = None,
    until: Until = None,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv, or send Accept: text/csv")] = None,
) -> Any:
    """红星考评: the units of one kind ranked by their score (the weighted mean of their
    response, resolution and satisfaction rates, weights in the policy's `scorecard`), with
    each unit's figures; as CSV for a spreadsheet with `Accept: text/csv` or `format=csv`."""
    window = window_of(since, until, ops.clock.now(), ops.policy)
    units = [u for u in ops.j.units if u.kind is kind]
    ranked = await scorecards.ranked(ops.db, window, units, ops.policy.scorecard)
    if format == "csv" or (format is None and "text/csv" in request.headers.get("accept", "")):
        return _csv(ranked, f"scorecards-{kind.value}-{window.since.date()}-{window.until.date()}.csv")
    return {"since": window.since, "until": window.until, "kind": kind.value, "units": ranked}


CSV_COLUMNS = (
    "rank",
    "unit_id",
    "unit_name",
    "unit_name_zh",
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
