"""The feed's routes: GET /v1/public/results (JSON, no token) and the page at /public."""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from intake.domain import CaseStatus, Satisfaction
from intake.public import feed
from intake.public.labels import LABELS, SATISFACTION, TRACK
from services.district.errors import Invalid
from services.district.jurisdiction import Jurisdiction, label
from services.district.policy import Policy
from services.district.text import Identifier
from services.messaging.transaction import Store
from services.web import pages
from services.web.openapi import RATE_LIMITED
from services.web.ratelimit import RateLimit

PACKAGE = "intake.public"
STYLE = "public.css"
# No script at all; only a page of gridcall's own origin may frame it.
HEADERS = pages.headers(pages.csp(script=False, frame_ancestors="'self'"))
# The tracking page runs its own script, which calls the case's API; framed by nobody.
TRACK_HEADERS = pages.headers(pages.csp(script=True))


class Named(BaseModel):
    name: str
    name_zh: str | None


class CategoryRef(Named):
    code: str


class CommunityRef(Named):
    id: str


class GridRef(Named):
    id: str


class UnitRef(BaseModel):
    unit_id: str | None
    name: str | None
    name_zh: str | None


class PublicResult(BaseModel):
    case_id: str
    status: Literal[CaseStatus.RESOLVED, CaseStatus.CLOSED]
    category: CategoryRef
    community: CommunityRef | None
    grid: GridRef | None
    reported_at: datetime
    resolved_at: datetime = Field(description="the latest resolution")
    closed_at: datetime | None
    resolved_by: UnitRef = Field(description="the unit that resolved it")
    result_note: str = Field(description="what the unit did, as it told the resident")
    satisfaction: Satisfaction | None = Field(description="the satisfaction visit's outcome; null while it is open")


class PublicResults(BaseModel):
    results: list[PublicResult]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


def feed_query(
    community: Annotated[Identifier | None, Query(description="a community id (GET /v1/units)")] = None,
    category: Annotated[Identifier | None, Query(description="a public category's code (GET /v1/categories)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> feed.FeedQuery:
    return feed.FeedQuery(community=community, category=category, limit=limit, cursor=cursor)


FeedQueryDep = Annotated[feed.FeedQuery, Depends(feed_query)]


def router(store: Store, j: Jurisdiction, policy: Policy, rate_limit: RateLimit) -> APIRouter:
    api = APIRouter()
    static = pages.StaticFiles(PACKAGE, (STYLE, "track.js"), "/public")
    env = pages.templates(PACKAGE)

    async def results(q: feed.FeedQuery) -> PublicResults:
        async with store.db.sessions() as s:
            rows, cursor = await feed.page(s, q, j, policy)
        found = [feed.result(r, j, policy) for r in rows]
        return PublicResults.model_validate({"results": found, "next_cursor": cursor})

    @api.get(
        "/v1/public/results",
        tags=["public"],
        dependencies=[Depends(rate_limit)],
        response_model=PublicResults,
        responses=RATE_LIMITED,
    )
    async def public_results(q: FeedQueryDep) -> PublicResults:
        """公示: resolved and closed cases of public categories, the latest resolution first;
        no personal data, no one-key calls."""
        return await results(q)

    @api.get("/public", include_in_schema=False, dependencies=[Depends(rate_limit)])
    async def page(
        community: Annotated[str | None, Query(max_length=64)] = None,
        category: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        lang: Annotated[str | None, Query(max_length=20)] = None,
    ) -> HTMLResponse:
        """The results as a page a community office can put on a screen; Chinese unless `?lang=en`.
        The filter form sends an empty value for "all"."""
        chosen = pages.language(lang)
        q = feed.FeedQuery(community=community or None, category=category or None, limit=limit, cursor=cursor or None)
        try:
            found = await results(q)
            problem = None
        except Invalid:  # a community or category that is not ours, or a stale cursor: say so in the reader's words
            found, problem = PublicResults(results=[], next_cursor=None), LABELS[chosen]["bad_filter"]
        zh = chosen == "zh-CN"

        def link(**changes: Any) -> str:
            params = {"lang": "en" if not zh else None, "community": q.community, "category": q.category}
            params |= changes
            return "/public?" + urlencode({k: v for k, v in params.items() if v})

        html = env.get_template("public.html").render(
            lang=chosen,
            t=LABELS[chosen],
            satisfaction=SATISFACTION[chosen],
            results=found.results,
            problem=problem,
            name=lambda thing: label(thing, chosen),
            communities=[(c.id, label(c, chosen)) for c in j.communities],
            categories=[(c.code, label(c, chosen)) for c in policy.categories if c.public],
            chosen={"community": q.community, "category": q.category},
            next_link=link(cursor=found.next_cursor) if found.next_cursor else None,
            first_link=link() if q.cursor else None,
            other_link=link(lang="en" if zh else None, cursor=q.cursor),
            static=static,
        )
        return HTMLResponse(html, status_code=422 if problem else 200, headers=HEADERS)

    @api.get("/track/{case_id}", include_in_schema=False, dependencies=[Depends(rate_limit)])
    async def track(case_id: Identifier, lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """The resident's own page of a case: the link in their messages, with the tracking token in
        its fragment, which the page's script sends to GET /v1/cases/{case_id}."""
        chosen = pages.language(lang)
        words = TRACK[chosen] | {
            "zone": policy.calendar.timezone,
            "units": {u.id: label(u, chosen) for u in j.units},
            "categories": {c.code: label(c, chosen) for c in policy.categories},
        }
        other = "?lang=en" if chosen == "zh-CN" else ""
        html = env.get_template("track.html").render(
            lang=chosen, t=LABELS[chosen], words=words, case_id=case_id, other_link=other, static=static
        )
        return HTMLResponse(html, headers=TRACK_HEADERS)

    api.include_router(static.router())
    return api
