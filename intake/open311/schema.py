"""Open311 GeoReport v2 in the API description: the arguments of the routes, the documents
each resource answers with (in JSON; the XML form carries the same fields, list items named per
the spec), the form fields of POST requests, and the errors in the spec's format. The routes
build their answers as plain structures (`mapping.py`); these models only describe them, and a
test holds the two together."""

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.district.text import CONTROL, FREE_TEXT_PATTERN, STORABLE_PATTERN
from services.web.openapi import retry_after

FORMAT = {
    "description": "the answer's format: json, or xml (the spec's default)",
    "json_schema_extra": {"enum": ["json", "xml"]},
}
Format = Annotated[str, Path(**FORMAT)]  # checked by formats.served(), which answers 404 in the spec's format

# The window of a listing: w3 date-times, as the spec (and FixMyStreet's extension) take them.
DATE_TIME: dict[str, Any] = {"format": "date-time"}
StartDate = Annotated[
    str | None,
    Query(description="w3 date-time with a zone, e.g. 2026-11-01T00:00:00+08:00", json_schema_extra=DATE_TIME),
]
EndDate = Annotated[
    str | None, Query(description="w3 date-time; at most 90 days after start_date", json_schema_extra=DATE_TIME)
]
# The other arguments of GET requests.
RequestIds = Annotated[
    str | None,
    Query(description="comma-separated ids; when given, every other argument is ignored", pattern=STORABLE_PATTERN),
]
ServiceCodes = Annotated[str | None, Query(description="comma-separated service codes", pattern=STORABLE_PATTERN)]
Statuses = Annotated[
    str | None,
    Query(
        description="open, closed, or both comma-separated",
        json_schema_extra={"pattern": r"^(open|closed)(,(open|closed))*$"},  # the route says what is wrong
    ),
]
JurisdictionId = Annotated[
    str | None, Query(description="ignored: one jurisdiction is served", pattern=STORABLE_PATTERN)
]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecError(_Document):
    code: int = Field(description="the HTTP status")
    description: str = Field(description="what went wrong, and what to send instead")


class Endpoint(_Document):
    specification: str
    url: str
    changeset: str
    type: Literal["production", "test"]
    formats: list[str]


class Discovery(_Document):
    changeset: str = Field(description="when the services last changed")
    contact: str
    key_service: str = Field(description="how to get an API key")
    endpoints: list[Endpoint]


class Service(_Document):
    service_code: str
    service_name: str
    description: str
    metadata: bool = Field(description="true: the service has attributes (GET services/{service_code})")
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str | None


class AttributeValue(_Document):
    key: str
    name: str


class Attribute(_Document):
    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValue]


class ServiceDefinition(_Document):
    service_code: str
    attributes: list[Attribute]


class CreatedRequest(_Document):
    service_request_id: str = Field(description="the case id: follow it with GET requests/{service_request_id}")
    service_notice: str | None
    account_id: str | None


class RequestToken(_Document):
    service_request_id: str
    token: str


class ServiceRequest(_Document):
    service_request_id: str
    status: Literal["open", "closed"] = Field(description="closed once the handling unit has resolved it")
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None = Field(description="shown only for public reports filed through Open311")
    agency_responsible: str | None = Field(description="the unit leading the case at its current tier")
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None = Field(description="the current tier's resolution time limit")
    address: str
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class RequestUpdate(_Document):
    """FixMyStreet's servicerequestupdates extension: one public step of a request."""

    update_id: str
    service_request_id: str
    status: Literal["open", "closed"] = Field(description="the request's status after this step")
    updated_datetime: str
    description: str | None = Field(description="the step in words, as in status_notes")
    media_url: str | None


XML = {"text/xml": {"schema": {"type": "string", "description": "the same document in XML"}}}


def answer(model: Any, description: str) -> dict[str, Any]:
    return {"model": model, "description": description, "content": XML}


def spec_error(description: str) -> dict[str, Any]:
    return answer(list[SpecError], f"{description}; in the spec's format, [{{code, description}}]")


ERRORS: dict[int | str, dict[str, Any]] = {  # any Open311 operation
    404: spec_error("a format other than json or xml, or no such service, request or token"),
    413: spec_error("the request is larger than this service accepts"),
    429: {
        **spec_error("too many requests from this client (per api_key, else per IP address)"),
        "headers": retry_after("seconds until a request is accepted"),
    },
    503: {
        **spec_error("the service cannot reach its database right now: retry later"),
        "headers": retry_after("seconds to wait before retrying"),
    },
}
BAD_ARGUMENT: dict[int | str, dict[str, Any]] = {
    400: spec_error("an argument is missing or not valid; the description names it")
}
BAD_KEY: dict[int | str, dict[str, Any]] = {403: spec_error("api_key is missing or not one this service issued")}

_text = {"type": "string", "pattern": FREE_TEXT_PATTERN}  # what free text may hold (services/district/text.py)
REQUEST_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["api_key", "service_code"],
    "properties": {
        "api_key": {**_text, "description": "issued by the hotline centre (gridcall open311-key create)"},
        "service_code": {**_text, "description": "from GET services"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "WGS84; with long"},
        "long": {"type": "number", "minimum": -180, "maximum": 180, "description": "WGS84; with lat"},
        "address_string": {**_text, "description": "an address in the district's table (instead of lat and long)"},
        "address_id": {**_text, "description": "not served here: send lat and long, or address_string"},
        "description": {**_text, "maxLength": 4000, "description": "what is wrong (default: the service's name)"},
        "media_url": {**_text, "format": "uri", "description": "a photo, http or https"},
        "email": _text,
        "phone": _text,
        "first_name": _text,
        "last_name": _text,
        "device_id": _text,
        "account_id": {**_text, "description": "echoed back in the answer"},
        "jurisdiction_id": {**_text, "description": "ignored: one jurisdiction is served"},
    },
    "patternProperties": {
        rf"^attribute\[[^\]{CONTROL}]+\](\[\])?$": {
            **_text,
            "description": "attribute[code]=value for the service's attributes (GET services/{service_code}); "
            "attribute[code][]=key, repeated, for a multivaluelist",
        }
    },
}
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": REQUEST_FORM}},
    }
}
