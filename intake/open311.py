"""Open311 GeoReport v2 under /open311/v2/, so that existing Open311 clients and apps work
unchanged. The published specification is the contract: https://wiki.open311.org/GeoReport_v2

How gridcall maps onto it:
- a service is a category of the routing policy; its attributes are the category's questions;
- a service request is a case (`service_request_id` is the case id). A report of a problem
  already reported close by joins the open case, and the answer carries that case's id;
- `status` is `open` until the handling unit resolves the case, then `closed` (the spec's
  "it has been resolved"); a reopened case is `open` again. `status_notes` tells the last
  public step; `agency_responsible` is the unit that leads the case at its current tier;
  `expected_datetime` is the resolution time limit of that tier;
- requests are `realtime`: POST answers with the id, never with a token. `tokens/{token}`
  resolves a gridcall tracking token (from the v1 API) to its case id;
- this endpoint serves one jurisdiction, so `jurisdiction_id` is ignored, as the spec allows.

What is public: GET requests needs no key, so the listing shows only cases of categories the
policy marks `public` that no flagged household or one-key call raised. The resident's own
words (description, typed address, exact point, media) are shown only for reports filed
through Open311, whose apps tell their users that reports are public; other cases show the
grid's address and centre. Contact details and staff notes are never shown. A case that is
not listed can still be looked up by its (unguessable) id, without those details.
"""

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any
from xml.etree import ElementTree

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import and_, func, select
from starlette.formparsers import MultiPartException

from intake.api import Contact
from intake.domain import Report, ReportRejected, token_hash
from intake.filing import ReportWriter
from intake.keys import ApiKeys
from intake.open311_schema import (
    BAD_ARGUMENT,
    BAD_KEY,
    ERRORS,
    FORMAT,
    REQUEST_BODY,
    CreatedRequest,
    Discovery,
    RequestToken,
    RequestUpdate,
    Service,
    ServiceDefinition,
    ServiceRequest,
    answer,
)
from intake.open311_updates import step_view, steps
from intake.tables import case_views, reports, timeline
from services.district.events import Location, Priority
from services.district.jurisdiction import Jurisdiction
from services.district.policy import CategoryPolicy, Policy
from services.district.text import STORABLE_PATTERN, words
from services.messaging.transaction import Store
from services.web.edge import MAX_FORM_BODY
from services.web.errors import BadRequest, DomainError, Forbidden, Invalid, NotFound
from services.web.ratelimit import RateLimit

PREFIX = "/open311/"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not allowed in XML 1.0
ATTRIBUTE = re.compile(r"attribute\[([^\]]+)\](\[\])?")
WINDOW = timedelta(days=90)  # the spec's longest and default span for GET requests
MAX_REQUESTS = 1000  # the spec's default query limit
MAX_FIELDS = 200  # a form with more fields than this is not a service request
PRIVATE_CHANNELS = ("one_key",)
CLOSED = ("resolved", "closed")
# XML element names of list items, by their list's name (the spec's Spark convention).
ITEMS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
    "service_requests_updates": "request_update",
}


# The window of a listing: w3 date-times, as the spec (and FixMyStreet's extension) take them.
DATE_TIME: dict[str, Any] = {"format": "date-time"}
StartDate = Annotated[
    str | None,
    Query(description="w3 date-time with a zone, e.g. 2026-11-01T00:00:00+08:00", json_schema_extra=DATE_TIME),
]
EndDate = Annotated[
    str | None, Query(description="w3 date-time; at most 90 days after start_date", json_schema_extra=DATE_TIME)
]


# --- rendering: one structure, two formats ------------------------------------------------


def _element(tag: str, value: Any) -> ElementTree.Element:
    node = ElementTree.Element(tag)
    if isinstance(value, list):
        node.extend(_element(ITEMS[tag], item) for item in value)
    elif isinstance(value, dict):
        node.extend(_element(k, v) for k, v in value.items())
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = NOT_XML.sub("", str(value))
    return node


def render(fmt: str, root: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    if fmt == "json":
        content = json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")
    else:
        content = XML_DECLARATION + ElementTree.tostring(_element(root, body), encoding="unicode").encode()
    return Response(content, status_code=status, headers=headers, media_type=FORMATS[fmt])


def error(fmt: str, code: int, description: str, headers: Mapping[str, str] | None = None) -> Response:
    return render(
        fmt if fmt in FORMATS else "xml", "errors", [{"code": code, "description": description}], code, headers
    )


def fmt_of(path: str) -> str:
    """The format a path asks for (`….json`), XML if it names none the spec knows."""
    fmt = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else "xml"
    return fmt if fmt in FORMATS else "xml"


def render_error(request: Request, err: DomainError) -> Response:
    """The kernel's error renderer for /open311/: every error in the spec's format. A request the
    kernel finds invalid (a 422 elsewhere) is the spec's 400, naming the field."""
    if isinstance(err, Invalid):
        where = [
            ".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]) if e.get("loc") else "request"
            for e in err.errors
        ]
        text = "; ".join(f"{w}: {e['msg']}" for w, e in zip(where, err.errors, strict=True))
        return error(fmt_of(request.url.path), 400, text, err.headers)
    return error(fmt_of(request.url.path), err.status, err.message, err.headers)


def w3(moment: datetime | None, zone: Any) -> str | None:
    """A W3C date-time with the district's offset, e.g. 2026-11-02T09:30:00+08:00."""
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else None


def parse_w3(name: str, text: str) -> datetime:
    # An unencoded '+' in a query string arrives as a space: '...T00:00:00 08:00'.
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip()).upper()  # RFC 3339 allows a lowercase t and z
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a w3 date-time, e.g. 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} must include a time zone (Z or an offset such as +08:00)")
    return moment


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


# --- the mapping --------------------------------------------------------------------------


def service_of(cat: CategoryPolicy, j: Jurisdiction) -> dict[str, Any]:
    lead = j.unit(cat.departments[0])
    return {
        "service_code": cat.code,
        "service_name": cat.name,
        "description": f"{cat.name}. Handled first at the {cat.start_tier.value} tier.",
        "metadata": bool(cat.attributes),
        "type": "realtime",
        "keywords": ", ".join(k for k in (cat.name_zh, cat.code.replace("_", " ")) if k),
        "group": lead.name if lead else None,
    }


DATATYPE_HELP = {
    "number": "a number",
    "datetime": "an ISO 8601 date-time with a time zone, e.g. 2026-11-02T09:30:00+08:00",
    "multivaluelist": "one or more keys, as attribute[code][]=key",
}


def definition_of(cat: CategoryPolicy) -> dict[str, Any]:
    return {
        "service_code": cat.code,
        "attributes": [
            {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": DATATYPE_HELP.get(a.datatype),
                "order": order,
                "description": a.description,
                "values": [{"key": v.key, "name": v.name} for v in a.values],
            }
            for order, a in enumerate(cat.attributes, start=1)
        ],
    }


def service_notice(cat: CategoryPolicy, policy: Policy) -> str:
    sla = policy.tier_sla(cat.code, Priority.NORMAL, cat.start_tier)
    return (
        f"Sent to the {cat.start_tier.value} tier, which should respond within {sla.response.text} "
        f"and resolve it within {sla.resolution.text}; if it does not, the case goes up a tier."
    )


def status_of(case_status: str) -> str:
    """gridcall's statuses onto Open311's: resolved and closed cases are `closed`."""
    return "closed" if case_status in CLOSED else "open"


CLOSING = {
    "satisfied": "Closed: the reporter confirmed the resolution.",
    "no_answer": "Closed: resolved, and the reporter did not answer the satisfaction visit in time.",
    "cancelled": "Closed: withdrawn by the reporter.",
}


def status_note(kind: str | None, details: Mapping[str, Any], view: Any) -> str | None:
    """The last public step of the case, in words: no staff names; of staff notes, only those
    written for the resident (public)."""
    unit = details.get("unit_name") or view.unit_name or "the responsible unit"
    match kind:
        case "received":
            return "Received; being routed to the responsible grid."
        case "assigned":
            return f"Assigned to {unit} ({details.get('tier', view.tier)} tier)."
        case "co_handler_assigned":
            return f"{unit} joins the handling."
        case "claimed":
            return f"{view.unit_name} is handling it."
        case "escalated":
            return f"Escalated from the {details.get('from_tier')} tier to the {details.get('to_tier')} tier."
        case "redispatched":
            return f"Returned by the unit and dispatched again, now at the {details.get('to_tier')} tier."
        case "reassigned":
            return "Passed to another unit by the supervising office."
        case "note":
            return str(details.get("note") or "") or None
        case "departments_summoned":
            return "Several departments were summoned to handle it jointly."
        case "resolved":
            return f"Resolved by {view.unit_name}." if view.unit_name else "Resolved."
        case "closed":
            return CLOSING.get(details.get("reason", ""), "Closed.")
        case "reopened":
            return "Reopened: the reporter was not satisfied with the resolution."
        case "reported_again":
            return f"Reported by {details.get('reporters')} residents."
        case "cancel_requested":
            return "The reporter asked to withdraw it."
        case "cancel_refused":
            return "The reporter asked to withdraw it, but a unit had already taken it up."
        case "satisfaction":
            return "The reporter answered the satisfaction visit."
    return None


def text(fields: Mapping[str, str], name: str) -> str:
    """A free-text form field, checked as every free text is (services/district/text.py)."""
    try:
        return words(fields.get(name) or "")
    except ValueError as exc:
        raise BadRequest(f"{name} {exc}") from None


def _listed(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the definition's check says what is expected
    return int(value) if value.is_integer() else value  # nan and inf stay floats; the check refuses them


# --- the router ---------------------------------------------------------------------------


def router(
    store: Store,
    writer: ReportWriter,
    j: Jurisdiction,
    policy: Policy,
    keys: ApiKeys,
    rate_limit: RateLimit,
    *,
    changeset: datetime,
) -> APIRouter:
    """`changeset`: when the services last changed (the policy file's time), for discovery."""
    api = APIRouter(prefix="/open311/v2", tags=["open311"], responses=ERRORS)
    Format = Annotated[str, Path(**FORMAT)]  # checked by respond(), which answers 404 in the spec's format
    zone = policy.calendar.zone
    public_codes = [c.code for c in policy.categories if c.public]

    async def respond(request: Request, fmt: str, root: str, produce: Callable[[], Awaitable[Any]]) -> Response:
        """The answer in the asked format. Errors go to the kernel's handler, which renders them
        with `render_error`: the client's faults as 4xx, a database outage as 503, in the
        spec's format."""
        if fmt not in FORMATS:
            raise NotFound(f"format {fmt!r} is not served; use .xml or .json")
        return render(fmt, root, await produce())

    def category(code: str) -> CategoryPolicy:
        cat = policy.category(code)
        if cat is None:
            raise NotFound(f"service_code {code!r} was not found; GET services lists them")
        return cat

    def published(r: Any) -> dict[str, Any]:
        """One case as a service request, showing the resident's own words only where public."""
        cat = policy.category(r.category)
        grid = j.find_grid(r.grid_id)
        own_words = bool(cat and cat.public) and r.channel == "open311" and r.household_flag is None
        place = [r.details.get("address") if own_words else None]
        if grid is not None:
            community = j.community(grid.community_id)
            place += [grid.name, community.name, j.street(community.street_id).name]
            centre = grid.shape.centroid
        media = r.details.get("media_urls") or []
        return {
            "service_request_id": r.case_id,
            "status": status_of(r.status),
            "status_notes": status_note(r.step_type, r.step_details or {}, r) if r.step_type else None,
            "service_name": cat.name if cat else r.category,
            "service_code": r.category,
            "description": r.description if own_words else None,
            "agency_responsible": r.unit_name,
            "service_notice": None,  # expected_datetime says when, for this case's tier and priority
            "requested_datetime": w3(r.created_at, zone),
            # For closed requests: when it was closed (resolved), as the spec asks.
            "updated_datetime": w3(r.resolved_at if r.status in CLOSED and r.resolved_at else r.changed_at, zone),
            "expected_datetime": w3(r.resolution_due, zone),
            "address": ", ".join(p for p in [*place, j.district.name] if p),
            "address_id": None,
            "zipcode": None,
            "lat": r.lat if own_words or grid is None else round(centre.y, 6),
            "long": r.lon if own_words or grid is None else round(centre.x, 6),
            "media_url": media[0] if own_words and media else None,
        }

    async def requests_where(*conditions: Any, public: bool, limit: int = MAX_REQUESTS) -> list[dict[str, Any]]:
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
        if public:  # what anyone may list: see the module's docstring
            query = query.where(
                case_views.c.category.in_(public_codes),
                reports.c.channel.not_in(PRIVATE_CHANNELS),
                reports.c.household_flag.is_(None),
            )
        async with store.db.sessions() as s:
            return [published(r) for r in await s.execute(query)]

    @api.get(
        "/discovery.{fmt}",
        summary="Service discovery",
        responses={200: answer(Discovery, "where the endpoints are and what they speak")},
    )
    async def discovery(request: Request, fmt: Format) -> Response:
        async def produce() -> dict[str, Any]:
            await rate_limit.hit(request)
            stamp = w3(changeset, zone)
            return {
                "changeset": stamp,
                "contact": f"{j.district.name}: the district's service hotline centre",
                "key_service": "API keys for POST requests are issued by the hotline centre "
                "(on the server: gridcall open311-key create NAME)",
                "endpoints": [
                    {
                        "specification": SPECIFICATION,
                        "url": str(request.url_for("discovery", fmt=fmt)).rsplit("/", 1)[0],
                        "changeset": stamp,
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            }

        return await respond(request, fmt, "discovery", produce)

    @api.get(
        "/services.{fmt}",
        summary="GET Service List",
        responses={200: answer(list[Service], "every service (a gridcall category)")},
    )
    async def services(request: Request, fmt: Format) -> Response:
        async def produce() -> list[dict[str, Any]]:
            await rate_limit.hit(request)
            return [service_of(c, j) for c in policy.categories]

        return await respond(request, fmt, "services", produce)

    @api.get(
        "/services/{service_code}.{fmt}",
        summary="GET Service Definition",
        responses={200: answer(ServiceDefinition, "the service's attributes (questions)")},
    )
    async def service_definition(request: Request, service_code: str, fmt: Format) -> Response:
        async def produce() -> dict[str, Any]:
            await rate_limit.hit(request)
            return definition_of(category(service_code))

        return await respond(request, fmt, "service_definition", produce)

    @api.post(
        "/requests.{fmt}",
        summary="POST Service Request (form-encoded, api_key required)",
        responses={
            200: answer(list[CreatedRequest], "filed (or joined to an open case reported close by)"),
            **BAD_ARGUMENT,
            **BAD_KEY,
        },
        openapi_extra=REQUEST_BODY,  # read as a form by the route: attribute[code] keys repeat
    )
    async def create_request(request: Request, fmt: Format) -> Response:
        async def produce() -> list[dict[str, Any]]:
            try:
                # The kernel caps the body (413); no field of a body within the cap is refused here,
                # so that an over-long field is named below, with its limit.
                sent = await request.form(max_fields=MAX_FIELDS, max_part_size=MAX_FORM_BODY)
            except MultiPartException as exc:
                raise BadRequest(f"the form is over a limit: {exc.message}") from None
            except Exception:
                raise BadRequest(
                    "the body could not be read as a form: send application/x-www-form-urlencoded"
                ) from None
            form = [(k, v) for k, v in sent.multi_items() if isinstance(v, str)]
            fields = dict(form)
            key = fields.get("api_key") or request.query_params.get("api_key")
            valid = await keys.valid(key)
            await rate_limit.hit(request, key if valid else None)  # per key: many residents behind one app
            if not key:
                raise Forbidden("api_key was not provided -- can't proceed with create_request")
            if not valid:
                raise Forbidden("Invalid api_key received -- can't proceed with create_request")
            return [await submit(fields, form)]

        return await respond(request, fmt, "service_requests", produce)

    async def submit(fields: dict[str, str], form: list[tuple[str, str]]) -> dict[str, Any]:
        code = fields.get("service_code", "").strip()
        if not code:
            raise BadRequest("service_code was not provided; GET services lists them")
        cat = category(code)
        point = location(fields)
        address = text(fields, "address_string") or None
        if point is None and address is None:
            if fields.get("address_id"):
                raise BadRequest("address_id is not known here; send lat and long, or address_string")
            raise BadRequest("a location is required: lat and long, or address_string")
        description = text(fields, "description") or cat.name
        if len(description) > 4000:
            raise BadRequest(f"description is limited to 4,000 characters; this one has {len(description):,}")
        media = (fields.get("media_url") or "").strip()
        if media and not media.lower().startswith(("http://", "https://")):
            raise BadRequest("media_url must be an http or https URL")
        try:
            answer = await writer.file(
                Report(
                    category=cat.code,
                    description=description,
                    point=point,
                    address=address,
                    attributes=attributes(cat, form),
                    media_urls=[media] if media else [],
                    priority=Priority.NORMAL,
                    channel="open311",
                    contact=person(fields),
                )
            )
        except ReportRejected as exc:
            raise BadRequest(str(exc).replace("GET /v1/categories", "GET services")) from None
        notice = service_notice(cat, policy)
        if answer["linked_to_existing"]:
            notice = "This problem was already reported close by; your report joins that request. " + notice
        return {
            "service_request_id": answer["case_id"],
            "service_notice": notice,
            "account_id": text(fields, "account_id") or None,
        }

    def location(fields: dict[str, str]) -> Location | None:
        lat, lon = (fields.get("lat") or "").strip(), (fields.get("long") or "").strip()
        if not lat and not lon:
            return None
        if not lat or not lon:
            raise BadRequest("lat and long must both be sent")
        try:
            return Location(lat=float(lat), lon=float(lon))
        except (ValueError, ValidationError):
            raise BadRequest("lat and long must be WGS84 degrees, e.g. lat=30.505&long=114.305") from None

    def person(fields: dict[str, str]) -> dict[str, Any] | None:
        name = " ".join(n for n in (fields.get("first_name", "").strip(), fields.get("last_name", "").strip()) if n)
        given = {"name": name, "phone": fields.get("phone", "").strip(), "email": fields.get("email", "").strip()}
        try:
            contact = Contact(**{k: v for k, v in given.items() if v}).model_dump(exclude_none=True)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = {"name": "first_name and last_name"}.get(str(problem["loc"][0]), problem["loc"][0])
            raise BadRequest(f"{field} is not valid: {problem['msg']}") from None
        if account := text(fields, "account_id"):
            if len(account) > 100:
                raise BadRequest("account_id is limited to 100 characters")
            contact["account_id"] = account
        return contact or None

    def attributes(cat: CategoryPolicy, form: list[tuple[str, str]]) -> dict[str, Any]:
        """attribute[code]=value, and for a multivaluelist attribute[code][]=value repeated (or
        attribute[code] repeated); empty values count as not sent."""
        types = {a.code: a.datatype for a in cat.attributes}
        sent: dict[str, list[str]] = {}
        for key, value in form:
            if (m := ATTRIBUTE.fullmatch(key)) and value.strip():
                sent.setdefault(m[1], []).append(value.strip())
        given: dict[str, Any] = {}
        for code, values in sent.items():
            match types.get(code):
                case "multivaluelist":
                    given[code] = values
                case "number":
                    given[code] = _number(values[-1])
                case _:
                    given[code] = values[-1]
        return given

    @api.get(
        "/tokens/{token}.{fmt}",
        summary="GET service_request_id from a token",
        responses={200: answer(list[RequestToken], "the case a tracking token (from POST /v1/reports) follows")},
    )
    async def token(request: Request, token: str, fmt: Format) -> Response:
        async def produce() -> list[dict[str, Any]]:
            await rate_limit.hit(request)
            async with store.db.sessions() as s:
                case_id = await s.scalar(select(reports.c.case_id).where(reports.c.tracking_hash == token_hash(token)))
            if case_id is None:
                raise NotFound("token was not found")
            return [{"service_request_id": case_id, "token": token}]

        return await respond(request, fmt, "service_requests", produce)

    @api.get(
        "/requests.{fmt}",
        summary="GET Service Requests (90 days / 1,000 requests by default)",
        responses={200: answer(list[ServiceRequest], "public requests, newest first"), **BAD_ARGUMENT},
    )
    async def list_requests(
        request: Request,
        fmt: Format,
        service_request_id: Annotated[
            str | None,
            Query(
                description="comma-separated ids; when given, every other argument is ignored", pattern=STORABLE_PATTERN
            ),
        ] = None,
        service_code: Annotated[
            str | None, Query(description="comma-separated service codes", pattern=STORABLE_PATTERN)
        ] = None,
        start_date: StartDate = None,
        end_date: EndDate = None,
        status: Annotated[
            str | None,
            Query(
                description="open, closed, or both comma-separated",
                json_schema_extra={"pattern": r"^(open|closed)(,(open|closed))*$"},  # the handler says what is wrong
            ),
        ] = None,
        jurisdiction_id: Annotated[
            str | None, Query(description="ignored: one jurisdiction is served", pattern=STORABLE_PATTERN)
        ] = None,
    ) -> Response:
        async def produce() -> list[dict[str, Any]]:
            await rate_limit.hit(request)
            # Malformed dates and statuses are refused even where service_request_id makes them irrelevant.
            start = parse_w3("start_date", start_date) if start_date is not None else None
            end = parse_w3("end_date", end_date) if end_date is not None else None
            statuses = set(_listed(status))
            if unknown := statuses - {"open", "closed"}:
                raise BadRequest(f"status {sorted(unknown)[0]!r} is not one of: open, closed")
            if ids := _listed(service_request_id):  # overrides all other arguments
                return await requests_where(case_views.c.case_id.in_(ids), public=True)
            start, end = window(start, end, store.clock.now())
            conditions = [case_views.c.created_at >= start, case_views.c.created_at <= end]
            if codes := _listed(service_code):
                conditions.append(case_views.c.category.in_(codes))
            if statuses == {"closed"}:
                conditions.append(case_views.c.status.in_(CLOSED))
            elif statuses == {"open"}:
                conditions.append(case_views.c.status.not_in(CLOSED))
            return await requests_where(*conditions, public=True)

        return await respond(request, fmt, "service_requests", produce)

    @api.get(
        "/requests/{service_request_id}.{fmt}",
        summary="GET Service Request",
        responses={200: answer(list[ServiceRequest], "the request, listed or not (without private details)")},
    )
    async def one_request(request: Request, service_request_id: str, fmt: Format) -> Response:
        async def produce() -> list[dict[str, Any]]:
            await rate_limit.hit(request)
            found = await requests_where(case_views.c.case_id == service_request_id, public=False, limit=1)
            if not found:
                raise NotFound(f"service_request_id {service_request_id!r} was not found")
            return found

        return await respond(request, fmt, "service_requests", produce)

    @api.get(
        "/servicerequestupdates.{fmt}",
        summary="GET Service Request Updates (FixMyStreet's extension; 90 days / 1,000 updates by default)",
        responses={
            200: answer(list[RequestUpdate], "every public step of the listed requests, oldest first"),
            **BAD_ARGUMENT,
        },
    )
    async def request_updates(
        request: Request,
        fmt: Format,
        start_date: StartDate = None,
        end_date: EndDate = None,
    ) -> Response:
        async def produce() -> list[dict[str, Any]]:
            await rate_limit.hit(request)
            start = parse_w3("start_date", start_date) if start_date is not None else None
            end = parse_w3("end_date", end_date) if end_date is not None else None
            start, end = window(start, end, store.clock.now())
            async with store.db.sessions() as s:
                found = await steps(s, start, end, public_codes, MAX_REQUESTS)
            return [
                {
                    "update_id": str(row.id),
                    "service_request_id": row.case_id,
                    "status": status,
                    "updated_datetime": w3(row.at, zone),
                    "description": status_note(row.type, row.details or {}, step_view(row, j)),
                    "media_url": None,
                }
                for row, status in found
            ]

        return await respond(request, fmt, "service_requests_updates", produce)

    @api.api_route(
        "/{anything:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], include_in_schema=False
    )
    async def unknown(request: Request, anything: str) -> Response:
        fmt = anything.rsplit(".", 1)[-1] if "." in anything else "xml"
        if request.method not in ("GET", "POST"):
            return error(fmt, 405, f"{request.method} is not part of GeoReport v2; use GET, or POST for requests")
        return error(fmt, 404, f"no such resource: {anything!r}; see discovery.xml")

    return api
