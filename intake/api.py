"""Intake's resident API (/v1): file a report, follow the case with its tracking token, answer
the satisfaction visit or withdraw the case; and the categories and grids a report names.
Routes only: the models are in schemas.py, the work in usecases.py."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, status

from intake.domain import Report
from intake.schemas import Accepted, CancelIn, CaseView, CategoryOut, GridOut, ReportIn, SatisfactionIn
from intake.usecases import (
    CASE_NOT_FOUND,
    ReportWriter,
    answer_satisfaction,
    body_hash,
    grid_worker_only,
    request_cancel,
    scoped_key,
    tracked,
    tracked_case,
)
from services.district.jurisdiction import Jurisdiction
from services.district.policy import Policy
from services.messaging.transaction import Store
from services.web.auth import Authenticator
from services.web.openapi import RATE_LIMITED
from services.web.openapi import problem as _problem
from services.web.parts import bind, part
from services.web.ratelimit import RateLimit

BAD_BODY: dict[int | str, dict[str, Any]] = {400: _problem("the body could not be read (e.g. it is not UTF-8)")}


@dataclass(frozen=True)
class Parts:
    """What the resident routes work with: intake's store and report writer, the district, the
    policy, the authenticator (for the household flag) and the rate limit."""

    store: Store
    writer: ReportWriter
    j: Jurisdiction
    policy: Policy
    authenticator: Authenticator
    rate_limit: RateLimit


PartsDep = Annotated[Parts, Depends(part("intake"))]
api = APIRouter(prefix="/v1", tags=["residents"])


def router(
    store: Store,
    writer: ReportWriter,
    j: Jurisdiction,
    policy: Policy,
    authenticator: Authenticator,
    rate_limit: RateLimit,
) -> APIRouter:
    """The resident routes, with this deployment's parts."""
    return bind(api, intake=Parts(store, writer, j, policy, authenticator, rate_limit))


async def rate_limited(request: Request, parts: PartsDep) -> None:
    """The rate limit of a resident route: 429 with Retry-After once a client spent its window."""
    await parts.rate_limit(request)


@api.get("/categories", response_model=list[CategoryOut])
async def categories(parts: PartsDep) -> list[dict[str, Any]]:
    return [
        c.model_dump(include={"code", "name", "name_zh", "start_tier", "attributes"}) for c in parts.policy.categories
    ]


@api.get("/grids", response_model=list[GridOut])
async def grids(parts: PartsDep) -> list[dict[str, Any]]:
    out = []
    for g in parts.j.grids:
        c = g.shape.centroid
        out.append(
            {
                "grid_id": g.id,
                "name": g.name,
                "name_zh": g.name_zh,
                "community_id": g.community_id,
                "street_id": parts.j.community(g.community_id).street_id,
                "unit_id": g.unit_id,
                "centroid": {"lat": round(c.y, 6), "lon": round(c.x, 6)},
            }
        )
    return out


@api.post(
    "/reports",
    dependencies=[Depends(rate_limited)],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        **BAD_BODY,
        403: _problem("household_flag sent without a grid worker's staff token"),
        409: _problem("Idempotency-Key reused with a different body"),
        **RATE_LIMITED,
    },
)
async def submit_report(
    report: ReportIn,
    request: Request,
    parts: PartsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200, description="retry safely with the same key")] = None,
    authorization: Annotated[
        str | None, Header(max_length=4096, description="a grid worker's token, for household_flag")
    ] = None,
) -> dict[str, Any]:
    """File a report. It is durable once this answers 202; follow it with the token.
    `Idempotency-Key` is the client's own (its API key, else its address): the same key from
    another client is another request, and never gets this one's tracking token."""
    if report.household_flag is not None:
        await grid_worker_only(parts.store, parts.authenticator, parts.j, authorization)
    if idempotency_key is not None:
        client = await parts.rate_limit.client(request, request.headers.get("x-api-key"))
        idempotency_key = scoped_key(client, idempotency_key)
    return await parts.writer.file(
        Report(
            category=report.category,
            description=report.description,
            point=report.location.point,
            address=report.location.address,
            grid_id=report.location.grid_id,
            attributes=report.attributes,
            media_urls=[str(u) for u in report.media_urls],
            anonymous=report.anonymous,
            insist=report.insist,
            priority=report.priority,
            channel=report.channel,
            household_flag=report.household_flag,
            contact=report.contact.model_dump(exclude_none=True) if report.contact else None,
            idempotency_key=idempotency_key,
            request_hash=body_hash(report.model_dump_json()),
        )
    )


@api.get(
    "/cases/{case_id}",
    dependencies=[Depends(rate_limited)],
    response_model=CaseView,
    responses={404: _problem(CASE_NOT_FOUND), **RATE_LIMITED},
)
async def track_case(
    case_id: str, parts: PartsDep, x_tracking_token: Annotated[str | None, Header(max_length=200)] = None
) -> dict[str, Any]:
    """The resident's view of a case. A wrong token looks exactly like a missing case."""
    return await tracked_case(parts.store, case_id, x_tracking_token)


@api.post(
    "/cases/{case_id}/satisfaction",
    dependencies=[Depends(rate_limited)],
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **BAD_BODY,
        403: _problem("a later report that joined the case: only the first reporter answers for it"),
        404: _problem(CASE_NOT_FOUND),
        409: _problem("not resolved, or answered"),
        **RATE_LIMITED,
    },
)
async def satisfaction(
    case_id: str,
    answer: SatisfactionIn,
    parts: PartsDep,
    x_tracking_token: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, str]:
    """回访: tell whether the resolution satisfied you; unsatisfied reopens the case."""
    await tracked(parts.store, case_id, x_tracking_token, first_reporter=True)
    await answer_satisfaction(parts.store, case_id, answer.answer == "satisfied", answer.comment)
    return {"case_id": case_id, "answer": answer.answer}


@api.post(
    "/cases/{case_id}/cancel",
    dependencies=[Depends(rate_limited)],
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **BAD_BODY,
        403: _problem("a later report that joined the case: only the first reporter cancels it"),
        404: _problem(CASE_NOT_FOUND),
        409: _problem("already claimed or closed"),
        **RATE_LIMITED,
    },
)
async def cancel(
    case_id: str,
    parts: PartsDep,
    x_tracking_token: Annotated[str | None, Header(max_length=200)] = None,
    body: CancelIn | None = None,
) -> dict[str, str]:
    """Withdraw a case that nobody has claimed yet."""
    await tracked(parts.store, case_id, x_tracking_token, first_reporter=True)
    await request_cancel(parts.store, case_id, body.reason if body else "")
    return {"case_id": case_id, "status": "cancel_requested"}
