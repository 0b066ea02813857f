"""The request and response models of intake's resident API (/v1): reports, the tracking
view of a case, the resident's commands on it, and the district's categories and grids."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from intake.domain import CaseStatus
from services.district.errors import refused
from services.district.events import Location, Priority, Tier
from services.district.text import EMAIL_PATTERN, PHONE_PATTERN, REMARK, WORDS, Identifier

Name = Annotated[str, Field(min_length=1, max_length=100), WORDS]
Address = Annotated[str, Field(min_length=1, max_length=200), WORDS]
Description = Annotated[str, Field(min_length=1, max_length=4000), WORDS]
Comment = Annotated[str, Field(max_length=2000), REMARK]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    email: str | None = Field(None, max_length=254, pattern=EMAIL_PATTERN)
    language: Literal["zh-CN", "en"] | None = Field(
        None, description="the language of the messages the resident gets by email or SMS: zh-CN (the default) or en"
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
            raise refused("lat_and_lon", "give both lat and lon")
        forms = [self.lat is not None, self.address is not None, self.grid_id is not None]
        if sum(forms) != 1:
            raise refused("one_location", "give exactly one of: lat and lon, address, grid_id")
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
            said = "an anonymous report cannot carry contact details: drop one of them"
            raise refused("anonymous_with_contact", said)
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
    name_zh: str
    community_id: str
    street_id: str
    unit_id: str
    centroid: Point
