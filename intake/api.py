from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, status
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from sqlalchemy import select

from intake.domain import CaseStatus, Report, token_matches
from intake.filing import ReportWriter
from intake.handlers import answer_satisfaction, body_hash, request_cancel
from intake.tables import case_views, reports, timeline
from services.district.events import Location, Priority, Tier
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.policy import Policy
from services.district.text import REMARK, WORDS, Identifier
from services.messaging.transaction import Store
from services.web.auth import Authenticator, bearer_token
from services.web.errors import Forbidden, NotFound
from services.web.openapi import RATE_LIMITED
from services.web.openapi import problem as _problem
from services.web.ratelimit import RateLimit

Name = Annotated[str, Field(min_length=1, max_length=100), WORDS]
Address = Annotated[str, Field(min_length=1, max_length=200), WORDS]
Description = Annotated[str, Field(min_length=1, max_length=4000), WORDS]
Comment = Annotated[str, Field(max_length=2000), REMARK]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 -]{5,19}$")
    email: str | None = Field(
        None, max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
    )


LOCATION_TYPES = {"lat": "number", "lon": "number", "address": "string", "grid_id": "string"}


def _only(*given: str) -> dict[str, Any]:
    """The JSON schema of one form of LocationIn: these fields given, the others absent or null."""
    types = {f: t if f in given else "null" for f, t in LOCATION_TYPES.items()}
    return {"required": list(given), "properties": {f: {"type": t} for f, t in types.items()}}


class LocationIn(BaseModel):
    """Where the problem is, in exactly one of three forms: coordinates (lat and lon), an
    address from the district's address table, or a grid id (GET /v1/grids)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"oneOf": [_only("lat", "lon"), _only("address"), _only("grid_id")]},
    )
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: Address | None = None
    grid_id: Identifier | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "LocationIn":
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon")
        forms = [self.lat is not None, self.address is not None, self.grid_id is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of: lat and lon, address, grid_id")
        return self

    @property
    def point(self) -> Location | None:
        return Location(lat=self.lat, lon=self.lon) if self.lat is not None and self.lon is not None else None


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
    category: Identifier = Field(description="a code from GET /v1/categories")
    description: Description
    location: LocationIn
    attributes: dict[str, Any] = Field({}, description="answers to the category's questions (GET /v1/categories)")
    media_urls: list[HttpUrl] = Field([], max_length=5, description="photos or video, http(s) only")
    contact: Contact | None = None
    anonymous: bool = Field(False, description="file without contact details")
    insist: bool = Field(
        False, description="file a new case even if an open case of this category is reported close by"
    )
    priority: Priority = Priority.NORMAL
    channel: Literal["app", "patrol", "hotline", "one_key", "open311"] = "app"
    household_flag: Literal["red", "yellow", "blue"] | None = Field(
        None,
        description="the household's ledger colour; only a grid worker's staff token may set it, "
        "and the routing policy may raise the priority for it",
    )

    @model_validator(mode="after")
    def _anonymous_means_no_contact(self) -> "ReportIn":
        if self.anonymous and self.contact is not None:
            raise ValueError("an anonymous report cannot carry contact details: drop one of them")
        return self


class Accepted(BaseModel):
    case_id: str
    tracking_token: str = Field(description="keep it: send it as X-Tracking-Token to follow the case")
    status: CaseStatus
    linked_to_existing: bool = Field(
        False, description="the same problem was already reported close by: follow that case with this token"
    )


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
    reporters: int = Field(description="how many residents reported this problem")
    response_due: datetime | None = Field(None, description="claim expected by (current tier)")
    resolution_due: datetime | None = Field(None, description="resolution expected by (current tier)")
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntry]


class SatisfactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: Literal["satisfied", "unsatisfied"]
    comment: Comment = ""


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Comment = ""


class CategoryOut(BaseModel):
    code: str
    name: str
    name_zh: str | None
    start_tier: Tier
    attributes: list[dict[str, Any]]


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


BAD_BODY: dict[int | str, dict[str, Any]] = {400: _problem("the body could not be read (e.g. it is not UTF-8)")}


CASE_NOT_FOUND = "no case with this id and tracking token"


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

    async def _tracked(case_id: str, token: str | None) -> Any:
        """The case's view if `token` is the tracking token of one of its reports."""
        async with store.db.sessions() as s:
            hashes = (await s.scalars(select(reports.c.tracking_hash).where(reports.c.case_id == case_id))).all()
            if not any(token_matches(token, h) for h in hashes):
                raise NotFound(CASE_NOT_FOUND)
            return (await s.execute(select(case_views).where(case_views.c.case_id == case_id))).one()

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
        view = await _tracked(case_id, x_tracking_token)
        async with store.db.sessions() as s:
            entries = await s.execute(select(timeline).where(timeline.c.case_id == case_id).order_by(timeline.c.id))
            return {**view._mapping, "timeline": [{"at": e.at, "type": e.type, **e.details} for e in entries]}

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
        await _tracked(case_id, x_tracking_token)
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
        await _tracked(case_id, x_tracking_token)
        await request_cancel(store, case_id, body.reason if body else "")
        return {"case_id": case_id, "status": "cancel_requested"}

    return api
