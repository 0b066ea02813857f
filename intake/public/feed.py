"""Reading the feed: which cases are public results, one page at a time."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from intake.tables import case_views, reports
from services.district.errors import Invalid
from services.district.jurisdiction import Jurisdiction
from services.district.policy import Policy
from services.district.text import moment

PRIVATE_CHANNELS = ("one_key",)
DONE = ("resolved", "closed")
BAD_CURSOR = "cursor is not one this API gave: pass next_cursor from the previous page, or leave it out to start again"


@dataclass(frozen=True)
class FeedQuery:
    community: str | None = None
    category: str | None = None
    limit: int = 20
    cursor: str | None = None


def check(q: FeedQuery, j: Jurisdiction, policy: Policy) -> None:
    """Refuses what names nothing published, saying what would be accepted."""
    if q.community is not None and q.community not in {c.id for c in j.communities}:
        known = ", ".join(c.id for c in j.communities)
        said = f"unknown community {q.community!r}; use one of: {known}"
        raise Invalid(said, loc=("query", "community"), kind="unknown_community")
    if q.category is not None:
        cat = policy.category(q.category)
        public = ", ".join(c.code for c in policy.categories if c.public)
        if cat is None:
            said = f"unknown category {q.category!r}; use one of: {public}"
            raise Invalid(said, loc=("query", "category"), kind="unknown_category")
        if not cat.public:
            raise Invalid(
                f"category {q.category!r} is not published; use one of: {public}",
                loc=("query", "category"),
                kind="unpublished_category",
            )
    if q.cursor is not None:
        _after(q.cursor)


def _cursor(row: Any) -> str:
    raw = json.dumps([row.resolved_at.isoformat(), row.case_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        at, case_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(case_id, str):
            raise ValueError
        return moment(datetime.fromisoformat(at)), case_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid(BAD_CURSOR, loc=("query", "cursor"), kind="bad_cursor") from None


async def page(session: AsyncSession, q: FeedQuery, j: Jurisdiction, policy: Policy) -> tuple[list[Any], str | None]:
    """One page of results, the latest resolution first, and the next page's cursor (None on the last)."""
    check(q, j, policy)
    first = and_(reports.c.case_id == case_views.c.case_id, reports.c.linked.is_(False))
    query = (
        select(
            case_views.c.case_id,
            case_views.c.status,
            case_views.c.category,
            case_views.c.created_at,
            case_views.c.resolved_at,
            case_views.c.closed_at,
            case_views.c.resolved_unit_id,
            case_views.c.result_note,
            case_views.c.satisfaction,
            reports.c.grid_id,
        )
        .join(reports, first)
        .where(
            case_views.c.status.in_(DONE),
            case_views.c.resolved_at.is_not(None),
            case_views.c.category.in_([c.code for c in policy.categories if c.public]),
            reports.c.channel.not_in(PRIVATE_CHANNELS),
            reports.c.household_flag.is_(None),
        )
    )
    if q.community is not None:
        query = query.where(reports.c.grid_id.in_([g.id for g in j.grids if g.community_id == q.community]))
    if q.category is not None:
        query = query.where(case_views.c.category == q.category)
    if q.cursor is not None:
        at, case_id = _after(q.cursor)
        resolved = case_views.c.resolved_at
        query = query.where(or_(resolved < at, and_(resolved == at, case_views.c.case_id < case_id)))
    order = (case_views.c.resolved_at.desc(), case_views.c.case_id.desc())
    rows = list(await session.execute(query.order_by(*order).limit(q.limit + 1)))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, _cursor(rows[-1]) if more else None


def result(row: Any, j: Jurisdiction, policy: Policy) -> dict[str, Any]:
    """One case as the public sees it: names in both languages, times in the district's zone."""
    zone = policy.calendar.zone
    cat = policy.category(row.category)
    grid = j.find_grid(row.grid_id)
    community = j.community(grid.community_id) if grid else None
    unit = j.unit(row.resolved_unit_id) if row.resolved_unit_id else None
    return {
        "case_id": row.case_id,
        "status": row.status,
        "category": {"code": row.category, "name": cat.name if cat else row.category, "name_zh": cat and cat.name_zh},
        "community": community and {"id": community.id, "name": community.name, "name_zh": community.name_zh},
        "grid": grid and {"id": grid.id, "name": grid.name, "name_zh": grid.name_zh},
        "reported_at": row.created_at.astimezone(zone),
        "resolved_at": row.resolved_at.astimezone(zone),
        "closed_at": row.closed_at.astimezone(zone) if row.closed_at else None,
        "resolved_by": {
            "unit_id": row.resolved_unit_id,
            "name": unit.name if unit else row.resolved_unit_id,
            "name_zh": unit.name_zh if unit else None,
        },
        "result_note": row.result_note or "",
        "satisfaction": row.satisfaction,
    }
