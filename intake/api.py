"""Intake's resident API (/v1): file a report, follow the case with its tracking token, answer
the satisfaction visit or withdraw the case; and the categories and grids a report names.
Routes only: the models are in schemas.py, the work in usecases.py."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, status

from intake.domain import Report
from intake.schemas import Accepted, CancelIn, CaseView, CategoryOut, GridOut, ReportIn, SatisfactionIn
from intake.usecases import (
    CASE_NOT_FOUND,
    ReportWriter,
    answer_satisfaction,
    body_hash,
    request_cancel,
    tracked,
    tracked_case,
)
from services.district.errors import Forbidden
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.policy import Policy
from services.messaging.transaction import Store
from services.web.auth import Authenticator, bearer_token
from services.web.openapi import RATE_LIMITED
from services.web.openapi import problem as _problem
from services.web.ratelimit import RateLimit

BAD_BODY: dict[int | str, dict[str, Any]] = {400: _problem("the body could not be read (e.g. it is not UTF-8)")}


def router(
    store: Store,
    writer: ReportWriter,
    j: Jurisdiction,
    policy: Policy,
    authenticator: Authenticator,
    rate_limit: RateLimit,
) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["residents"])
    limited = [Depends(rate_limit)]

    def _grid_worker(authorization: str | None) -> None:
        """Only a grid worker (a grid unit's staff token) may flag a household."""
        token = bearer_token(authorization)
        try:
            principal = authenticator.verify(token) if token else None
        except ValueError:
            principal = None
        unit = j.unit(principal.unit_id) if principal and principal.unit_id else None
        if unit is None or unit.kind is not UnitKind.GRID:
            raise Forbidden(
                "household_flag can only be set by a grid worker: send a grid unit's staff token "
                "as 'Authorization: Bearer <token>'",
            )

    @api.get("/categories", response_model=list[CategoryOut])
    async def categories() -> list[dict[str, Any]]:
        return [
            c.model_dump(include={"code", "name", "name_zh", "start_tier", "attributes"}) for c in policy.categories
        ]

    @api.get("/grids", response_model=list[GridOut])
    async def grids() -> list[dict[str, Any]]:
        out = []
        for g in j.grids:
            c = g.shape.centroid
            out.append(
                {
                    "grid_id": g.id,
                    "name": g.name,
                    "community_id": g.community_id,
                    "street_id": j.community(g.community_id).street_id,
                    "unit_id": g.unit_id,
                    "centroid": {"lat": round(c.y, 6), "lon": round(c.x, 6)},
                }
            )
        return out

    @api.post(
        "/reports",
        dependencies=limited,
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
        idempotency_key: Annotated[
            str | None, Header(max_length=200, description="retry safely with the same key")
        ] = None,
        authorization: Annotated[
            str | None, Header(max_length=4096, description="a grid worker's token, for household_flag")
        ] = None,
    ) -> dict[str, Any]:
        """File a report. It is durable once this answers 202; follow it with the token."""
        if report.household_flag is not None:
            _grid_worker(authorization)
        return await writer.file(
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
        dependencies=limited,
        response_model=CaseView,
        responses={404: _problem(CASE_NOT_FOUND), **RATE_LIMITED},
    )
    async def track_case(
        case_id: str, x_tracking_token: Annotated[str | None, Header(max_length=200)] = None
    ) -> dict[str, Any]:
        """The resident's view of a case. A wrong token looks exactly like a missing case."""
        return await tracked_case(store, case_id, x_tracking_token)

    @api.post(
        "/cases/{case_id}/satisfaction",
        dependencies=limited,
        status_code=status.HTTP_202_ACCEPTED,
        responses={
            **BAD_BODY,
            404: _problem(CASE_NOT_FOUND),
            409: _problem("not resolved, or answered"),
            **RATE_LIMITED,
        },
    )
    async def satisfaction(
        case_id: str, answer: SatisfactionIn, x_tracking_token: Annotated[str | None, Header(max_length=200)] = None
    ) -> dict[str, str]:
        """回访: tell whether the resolution satisfied you; unsatisfied reopens the case."""
        await tracked(store, case_id, x_tracking_token)
        await answer_satisfaction(store, case_id, answer.answer == "satisfied", answer.comment)
        return {"case_id": case_id, "answer": answer.answer}

    @api.post(
        "/cases/{case_id}/cancel",
        dependencies=limited,
        status_code=status.HTTP_202_ACCEPTED,
        responses={
            **BAD_BODY,
            404: _problem(CASE_NOT_FOUND),
            409: _problem("already claimed or closed"),
            **RATE_LIMITED,
        },
    )
    async def cancel(
        case_id: str,
        x_tracking_token: Annotated[str | None, Header(max_length=200)] = None,
        body: CancelIn | None = None,
    ) -> dict[str, str]:
        """Withdraw a case that nobody has claimed yet."""
        await tracked(store, case_id, x_tracking_token)
        await request_cancel(store, case_id, body.reason if body else "")
        return {"case_id": case_id, "status": "cancel_requested"}

    return api
