"""FixMyStreet's servicerequestupdates extension to Open311: every public step (a timeline entry)
of the listed requests in a window, oldest first, so that an app that pulls updates sees each.
A request is listed as in GET requests (public category, no one-key call, no flagged household);
a step's status is the request's after it, replayed from the case's earlier steps."""

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, select

from intake.tables import case_views, reports, timeline
from services.district.jurisdiction import Jurisdiction

PRIVATE_CHANNELS = ("one_key",)
# What a step makes of the request's status; the steps not named leave it as it was.
STEP_STATUS = {
    "received": "open",
    "assigned": "open",
    "claimed": "open",
    "escalated": "open",
    "redispatched": "open",
    "reassigned": "open",
    "reopened": "open",
    "resolved": "closed",
    "closed": "closed",
}


async def steps(session: Any, start: datetime, end: datetime, public_codes: list[str], limit: int) -> list[Any]:
    """The steps in [start, end] of the listed requests, each with the status the request had
    after it; at most `limit`, oldest first."""
    listed = and_(
        reports.c.case_id == case_views.c.case_id,
        reports.c.linked.is_(False),
        reports.c.channel.not_in(PRIVATE_CHANNELS),
        reports.c.household_flag.is_(None),
        case_views.c.category.in_(public_codes),
    )
    in_window = and_(timeline.c.at >= start, timeline.c.at <= end)
    cases = (
        select(timeline.c.case_id)
        .join(case_views, case_views.c.case_id == timeline.c.case_id)
        .join(reports, listed)
        .where(in_window)
        .group_by(timeline.c.case_id)
    )
    query = (
        select(timeline, case_views.c.unit_name.label("view_unit_name"), case_views.c.tier.label("view_tier"))
        .join(case_views, case_views.c.case_id == timeline.c.case_id)
        .where(timeline.c.case_id.in_(cases), timeline.c.at <= end)
        .order_by(timeline.c.case_id, timeline.c.id)
    )
    found: list[Any] = []
    status, case_id = "open", None
    for row in await session.execute(query):
        if row.case_id != case_id:
            status, case_id = "open", row.case_id
        status = STEP_STATUS.get(row.type, status)
        if row.at >= start:
            found.append((row, status))
    found.sort(key=lambda step: (step[0].at, step[0].id))
    return found[:limit]


def step_view(row: Any, j: Jurisdiction) -> Any:
    """What `status_note` reads of the case, as it was at this step where the step says."""
    unit = j.unit(row.details.get("unit_id", "")) if isinstance(row.details, dict) else None
    return SimpleNamespace(unit_name=unit.name if unit else row.view_unit_name, tier=row.view_tier)
