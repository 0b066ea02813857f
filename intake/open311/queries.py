"""The listings' SQL: the cases GET requests lists or looks up, the case a tracking token
follows, and FixMyStreet's servicerequestupdates extension: every public step (a timeline
entry) of the listed requests in a window, oldest first, so that an app that pulls updates sees
each. A request is listed as in GET requests (public category, no one-key call, no flagged
household); a step's status is the request's after it, replayed from the case's earlier steps."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain import token_hash
from intake.open311.mapping import CLOSED
from intake.tables import case_views, reports, timeline
from services.district.errors import BadRequest

WINDOW = timedelta(days=90)  # the spec's longest and default span for GET requests
MAX_REQUESTS = 1000  # the spec's default query limit
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


def listed(value: str | None) -> list[str]:
    """The items of a comma-separated argument."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The span asked for: at most 90 days, the last 90 days by default."""
    if start and end and start > end:
        raise BadRequest("start_date is after end_date")
    if start and end and end - start > WINDOW:
        raise BadRequest("start_date and end_date may not span more than 90 days")
    try:
        if start is None:
            end = end or now
            return end - WINDOW, end
        return start, end or start + WINDOW
    except OverflowError:
        raise BadRequest("start_date or end_date is out of range") from None


def cases(ids: Sequence[str]) -> Any:
    return case_views.c.case_id.in_(ids)


def the_case(case_id: str) -> Any:
    return case_views.c.case_id == case_id


def created_in(start: datetime, end: datetime, codes: Sequence[str], statuses: set[str]) -> list[Any]:
    """The conditions of a listing: created in [start, end], of these services (any if none),
    open or closed (both if neither or both)."""
    conditions = [case_views.c.created_at >= start, case_views.c.created_at <= end]
    if codes:
        conditions.append(case_views.c.category.in_(codes))
    if statuses == {"closed"}:
        conditions.append(case_views.c.status.in_(CLOSED))
    elif statuses == {"open"}:
        conditions.append(case_views.c.status.not_in(CLOSED))
    return conditions


async def requests_where(
    session: AsyncSession, *conditions: Any, public_codes: Sequence[str] | None, limit: int = MAX_REQUESTS
) -> list[Any]:
    """The cases that meet the conditions, newest first, each with its first report and its last
    step. With `public_codes`, only what anyone may list (see the package's docstring): cases of
    these categories that no one-key call or flagged household raised."""
    first = and_(reports.c.case_id == case_views.c.case_id, reports.c.linked.is_(False))
    last_step = select(func.max(timeline.c.id)).where(timeline.c.case_id == case_views.c.case_id)
    step = timeline.alias("step")
    query = (
        select(
            case_views,
            reports.c.description,
            reports.c.grid_id,
            reports.c.details,
            reports.c.channel,
            reports.c.household_flag,
            step.c.type.label("step_type"),
            step.c.details.label("step_details"),
            func.coalesce(step.c.at, case_views.c.updated_at).label("changed_at"),
        )
        .join(reports, first)
        .outerjoin(step, step.c.id == last_step.scalar_subquery())
        .where(*conditions)
        .order_by(case_views.c.created_at.desc())
        .limit(limit)
    )
    if public_codes is not None:
        query = query.where(
            case_views.c.category.in_(public_codes),
            reports.c.channel.not_in(PRIVATE_CHANNELS),
            reports.c.household_flag.is_(None),
        )
    return list(await session.execute(query))


async def case_of_token(session: AsyncSession, token: str) -> str | None:
    """The case a tracking token (from POST /v1/reports) follows."""
    case_id: str | None = await session.scalar(
        select(reports.c.case_id).where(reports.c.tracking_hash == token_hash(token))
    )
    return case_id


async def steps(session: Any, start: datetime, end: datetime, public_codes: list[str], limit: int) -> list[Any]:
    """The steps in [start, end] of the listed requests, oldest first, at most `limit`, each with
    the status the request had after it: that of the case's latest step up to it that sets one.
    The database walks the timeline by time and stops at `limit`; a step's status is one lookup
    in its case's timeline (a 90-day window of a big district holds millions of steps)."""
    listed = and_(
        reports.c.case_id == case_views.c.case_id,
        reports.c.linked.is_(False),
        reports.c.channel.not_in(PRIVATE_CHANNELS),
        reports.c.household_flag.is_(None),
        case_views.c.category.in_(public_codes),
    )
    setter = timeline.alias("setter")
    status_step = (
        select(setter.c.type)
        .where(setter.c.case_id == timeline.c.case_id, setter.c.id <= timeline.c.id, setter.c.type.in_(STEP_STATUS))
        .order_by(setter.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            timeline,
            case_views.c.unit_name.label("view_unit_name"),
            case_views.c.tier.label("view_tier"),
            status_step.label("status_step"),
        )
        .join(case_views, case_views.c.case_id == timeline.c.case_id)
        .join(reports, listed)
        .where(timeline.c.at >= start, timeline.c.at <= end)
        .order_by(timeline.c.at, timeline.c.id)
        .limit(limit)
    )
    return [(row, STEP_STATUS.get(row.status_step, "open")) for row in await session.execute(query)]
