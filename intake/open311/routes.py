"""Open311's routes. Each is a small function that checks the format asked for and counts the
client against the rate limit (`GeoReport.admit`), then answers in that format. Errors go to
the kernel's handler, which renders them with `formats.render_error` (the client's faults as
4xx, a database outage as 503, in the spec's format). What the routes share, the service's
parts, is one `GeoReport` that each takes as a dependency (`GeoReportDep`), bound to them by
`router` (services/web/parts.py)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.formparsers import MultiPartException

from intake.domain import ReportRejected
from intake.keys import ApiKeys
from intake.open311.formats import error, parse_w3, render, served
from intake.open311.mapping import (
    category,
    created,
    definition_of,
    discovery_of,
    published,
    report_of,
    service_of,
    update_of,
)
from intake.open311.queries import (
    MAX_REQUESTS,
    case_of_token,
    cases,
    created_in,
    listed,
    requests_where,
    steps,
    the_case,
    window,
)
from intake.open311.schema import (
    BAD_ARGUMENT,
    BAD_KEY,
    ERRORS,
    REQUEST_BODY,
    CreatedRequest,
    Discovery,
    EndDate,
    Format,
    JurisdictionId,
    RequestIds,
    RequestToken,
    RequestUpdate,
    Service,
    ServiceCodes,
    ServiceDefinition,
    ServiceRequest,
    StartDate,
    Statuses,
    answer,
)
from intake.usecases import ReportWriter
from services.district.errors import BadRequest, Forbidden, NotFound
from services.district.jurisdiction import Jurisdiction
from services.district.policy import Policy
from services.messaging.transaction import Store
from services.web.edge import MAX_FORM_BODY
from services.web.parts import bind, part
from services.web.ratelimit import RateLimit

MAX_FIELDS = 200  # a form with more fields than this is not a service request


@dataclass
class GeoReport:
    """What Open311's routes work with. `changeset`: when the services last changed (the policy
    file's time), for discovery."""

    store: Store
    writer: ReportWriter
    j: Jurisdiction
    policy: Policy
    keys: ApiKeys
    rate_limit: RateLimit
    changeset: datetime
    zone: Any = field(init=False)  # the district's, for w3 date-times
    public_codes: list[str] = field(init=False)  # the services GET requests lists

    def __post_init__(self) -> None:
        self.zone = self.policy.calendar.zone
        self.public_codes = [c.code for c in self.policy.categories if c.public]

    async def requests(self, *conditions: Any, public: bool, limit: int = MAX_REQUESTS) -> list[dict[str, Any]]:
        """The cases that meet the conditions as service requests; `public`: only listed ones."""
        async with self.store.db.sessions() as s:
            found = await requests_where(
                s, *conditions, public_codes=self.public_codes if public else None, limit=limit
            )
        return [published(r, self.policy, self.j) for r in found]

    async def admit(self, request: Request, fmt: str) -> None:
        """A route's first steps: the format asked for is one the spec knows (else a 404 in the
        spec's format), and the client is within the rate limit (else a 429)."""
        served(fmt)
        await self.rate_limit.hit(request)


GeoReportDep = Annotated[GeoReport, Depends(part("georeport"))]
api = APIRouter(prefix="/open311/v2", tags=["open311"], responses=ERRORS)


def router(geo: GeoReport) -> APIRouter:
    """Open311's routes, with this deployment's GeoReport."""
    return bind(api, georeport=geo)


@api.api_route(
    "/discovery.{fmt}",
    methods=["GET"],
    summary="Service discovery",
    responses={200: answer(Discovery, "where the endpoints are and what they speak")},
)
async def discovery(request: Request, fmt: Format, geo: GeoReportDep) -> Response:
    await geo.admit(request, fmt)
    url = str(request.url_for("discovery", fmt=fmt)).rsplit("/", 1)[0]
    return render(fmt, "discovery", discovery_of(url, geo.changeset, geo.zone, geo.j))


@api.api_route(
    "/services.{fmt}",
    methods=["GET"],
    summary="GET Service List",
    responses={200: answer(list[Service], "every service (a gridcall category)")},
)
async def services(request: Request, fmt: Format, geo: GeoReportDep) -> Response:
    await geo.admit(request, fmt)
    return render(fmt, "services", [service_of(c, geo.j) for c in geo.policy.categories])


@api.api_route(
    "/services/{service_code}.{fmt}",
    methods=["GET"],
    summary="GET Service Definition",
    responses={200: answer(ServiceDefinition, "the service's attributes (questions)")},
)
async def service_definition(request: Request, service_code: str, fmt: Format, geo: GeoReportDep) -> Response:
    await geo.admit(request, fmt)
    return render(fmt, "service_definition", definition_of(category(geo.policy, service_code)))


@api.api_route(
    "/requests.{fmt}",
    methods=["POST"],
    summary="POST Service Request (form-encoded, api_key required)",
    responses={
        200: answer(list[CreatedRequest], "filed (or joined to an open case reported close by)"),
        **BAD_ARGUMENT,
        **BAD_KEY,
    },
    openapi_extra=REQUEST_BODY,  # read as a form by the route: attribute[code] keys repeat
)
async def create_request(request: Request, fmt: Format, geo: GeoReportDep) -> Response:
    served(fmt)
    try:
        # The kernel caps the body (413); no field of a body within the cap is refused here,
        # so that an over-long field is named by the mapping, with its limit.
        sent = await request.form(max_fields=MAX_FIELDS, max_part_size=MAX_FORM_BODY)
    except MultiPartException as exc:
        raise BadRequest(f"the form is over a limit: {exc.message}") from None
    except Exception:
        raise BadRequest("the body could not be read as a form: send application/x-www-form-urlencoded") from None
    form = [(k, v) for k, v in sent.multi_items() if isinstance(v, str)]
    fields = dict(form)
    key = fields.get("api_key") or request.query_params.get("api_key")
    valid = await geo.keys.valid(key)
    await geo.rate_limit.hit(request, key if valid else None)  # per key: many residents behind one app
    if not key:
        raise Forbidden("api_key was not provided -- can't proceed with create_request")
    if not valid:
        raise Forbidden("Invalid api_key received -- can't proceed with create_request")
    cat, report = report_of(geo.policy, fields, form)
    try:
        filed = await geo.writer.file(report)
    except ReportRejected as exc:
        raise BadRequest(str(exc).replace("GET /v1/categories", "GET services")) from None
    return render(fmt, "service_requests", [created(filed, cat, geo.policy, fields)])


@api.api_route(
    "/tokens/{token}.{fmt}",
    methods=["GET"],
    summary="GET service_request_id from a token",
    responses={200: answer(list[RequestToken], "the case a tracking token (from POST /v1/reports) follows")},
)
async def token(request: Request, token: str, fmt: Format, geo: GeoReportDep) -> Response:
    await geo.admit(request, fmt)
    async with geo.store.db.sessions() as s:
        case_id = await case_of_token(s, token)
    if case_id is None:
        raise NotFound("token was not found")
    return render(fmt, "service_requests", [{"service_request_id": case_id, "token": token}])


@api.api_route(
    "/requests.{fmt}",
    methods=["GET"],
    summary="GET Service Requests (90 days / 1,000 requests by default)",
    responses={200: answer(list[ServiceRequest], "public requests, newest first"), **BAD_ARGUMENT},
)
async def list_requests(
    request: Request,
    fmt: Format,
    geo: GeoReportDep,
    service_request_id: RequestIds = None,
    service_code: ServiceCodes = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    status: Statuses = None,
    jurisdiction_id: JurisdictionId = None,
) -> Response:
    await geo.admit(request, fmt)
    # Malformed dates and statuses are refused even where service_request_id makes them irrelevant.
    start = parse_w3("start_date", start_date) if start_date is not None else None
    end = parse_w3("end_date", end_date) if end_date is not None else None
    statuses = set(listed(status))
    if unknown := statuses - {"open", "closed"}:
        raise BadRequest(f"status {sorted(unknown)[0]!r} is not one of: open, closed")
    if ids := listed(service_request_id):  # overrides all other arguments
        return render(fmt, "service_requests", await geo.requests(cases(ids), public=True))
    start, end = window(start, end, geo.store.clock.now())
    found = await geo.requests(*created_in(start, end, listed(service_code), statuses), public=True)
    return render(fmt, "service_requests", found)


@api.api_route(
    "/requests/{service_request_id}.{fmt}",
    methods=["GET"],
    summary="GET Service Request",
    responses={200: answer(list[ServiceRequest], "the request, listed or not (without private details)")},
)
async def one_request(request: Request, service_request_id: str, fmt: Format, geo: GeoReportDep) -> Response:
    await geo.admit(request, fmt)
    found = await geo.requests(the_case(service_request_id), public=False, limit=1)
    if not found:
        raise NotFound(f"service_request_id {service_request_id!r} was not found")
    return render(fmt, "service_requests", found)


@api.api_route(
    "/servicerequestupdates.{fmt}",
    methods=["GET"],
    summary="GET Service Request Updates (FixMyStreet's extension; 90 days / 1,000 updates by default)",
    responses={
        200: answer(list[RequestUpdate], "every public step of the listed requests, oldest first"),
        **BAD_ARGUMENT,
    },
)
async def request_updates(
    request: Request, fmt: Format, geo: GeoReportDep, start_date: StartDate = None, end_date: EndDate = None
) -> Response:
    await geo.admit(request, fmt)
    start = parse_w3("start_date", start_date) if start_date is not None else None
    end = parse_w3("end_date", end_date) if end_date is not None else None
    start, end = window(start, end, geo.store.clock.now())
    async with geo.store.db.sessions() as s:
        found = await steps(s, start, end, geo.public_codes, MAX_REQUESTS)
    return render(fmt, "service_requests_updates", [update_of(row, status, geo.j, geo.zone) for row, status in found])


@api.api_route("/{anything:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], include_in_schema=False)
async def unknown(request: Request, anything: str) -> Response:
    fmt = anything.rsplit(".", 1)[-1] if "." in anything else "xml"
    if request.method not in ("GET", "POST"):
        return error(fmt, 405, f"{request.method} is not part of GeoReport v2; use GET, or POST for requests")
    return error(fmt, 404, f"no such resource: {anything!r}; see discovery.xml")
