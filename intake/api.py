from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from intake.domain import CaseStatus, IdempotencyConflict, ReportRejected, token_matches
from intake.handlers import body_hash, file_report
from intake.tables import case_views, reports, timeline
from services.events import Location, Priority, Tier
from services.jurisdiction import Jurisdiction
from services.messaging import Store


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 -]{5,19}$")
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ReportIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "category": "streetlight",
                    "description": "The streetlight outside building 3 has been dark for a week.",
                    "location": {"lat": 30.515, "lon": 114.305},
                }
            ]
        },
    )
    category: str = Field(description="a code from GET /v1/categories")
    description: str = Field(min_length=1, max_length=4000)
    location: Location
    contact: Contact | None = None
    priority: Priority = Priority.NORMAL
    channel: Literal["app", "patrol", "hotline", "one_key"] = "app"

    @field_validator("description")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("description must say what the problem is; it cannot be blank")
        return text.strip()


class Accepted(BaseModel):
    case_id: str
    tracking_token: str = Field(description="keep it: send it as X-Tracking-Token to follow the case")
    status: CaseStatus


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: datetime
    type: str


class CaseView(BaseModel):
    case_id: str
    status: CaseStatus
    category: str
    tier: Tier | None
    unit_id: str | None
    unit_name: str | None
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntry]


class CategoryOut(BaseModel):
    code: str
    name: str
    name_zh: str | None
    start_tier: Tier


class Point(BaseModel):
    lat: float
    lon: float


class GridOut(BaseModel):
    grid_id: str
    name: str
    community_id: str
    street_id: str
    unit_id: str
    centroid: Point


def _unprocessable(exc: ReportRejected) -> HTTPException:
    return HTTPException(
        422,
        [{"loc": ["body", exc.field], "msg": str(exc), "type": exc.kind}],
    )


CASE_NOT_FOUND = "no case with this id and tracking token"


def router(store: Store, j: Jurisdiction) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["residents"])

    @api.get("/categories", response_model=list[CategoryOut])
    async def categories() -> list[dict[str, Any]]:
        return [c.model_dump(include={"code", "name", "name_zh", "start_tier"}) for c in j.categories]

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
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Accepted,
        responses={409: {"description": "Idempotency-Key reused with a different body"}},
    )
    async def submit_report(
        report: ReportIn,
        idempotency_key: Annotated[
            str | None, Header(max_length=200, description="retry safely with the same key")
        ] = None,
    ) -> dict[str, Any]:
        """File a report. It is durable once this answers 202; follow it with the token."""
        try:
            return await file_report(
                store,
                j,
                category=report.category,
                description=report.description,
                location=report.location,
                priority=report.priority,
                channel=report.channel,
                contact=report.contact.model_dump(exclude_none=True) if report.contact else None,
                idempotency_key=idempotency_key,
                request_hash=body_hash(report.model_dump_json()),
            )
        except ReportRejected as exc:
            raise _unprocessable(exc) from None
        except IdempotencyConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @api.get(
        "/cases/{case_id}",
        response_model=CaseView,
        responses={404: {"description": CASE_NOT_FOUND}},
    )
    async def track_case(case_id: str, x_tracking_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """The resident's view of a case. A wrong token looks exactly like a missing case."""
        async with store.db.sessions() as s:
            report = (
                await s.execute(
                    select(reports.c.tracking_hash, reports.c.created_at).where(reports.c.case_id == case_id)
                )
            ).first()
            if report is None or not token_matches(x_tracking_token, report.tracking_hash):
                raise HTTPException(status.HTTP_404_NOT_FOUND, CASE_NOT_FOUND)
            view = (await s.execute(select(case_views).where(case_views.c.case_id == case_id))).one()
            entries = await s.execute(select(timeline).where(timeline.c.case_id == case_id).order_by(timeline.c.id))
            return {
                **view._mapping,
                "created_at": report.created_at,
                "timeline": [{"at": e.at, "type": e.type, **e.details} for e in entries],
            }

    return api
