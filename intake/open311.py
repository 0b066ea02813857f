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
  resolves a gridcall tracking token (from the v1 API) to its case id.
"""

import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import ValidationError
from sqlalchemy import and_, delete, func, select

from intake.api import Contact
from intake.domain import ReportRejected, token_hash
from intake.handlers import body_hash, file_report
from intake.tables import case_views, open311_keys, reports, timeline
from services.clock import Clock
from services.db import Database
from services.events import Location, Priority
from services.jurisdiction import Jurisdiction
from services.messaging import Store
from services.policy import CategoryPolicy, Policy
from services.ratelimit import RateLimit

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-22T00:00:00Z"  # when this endpoint's contract last changed
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
ATTRIBUTE = re.compile(r"attribute\[([^\]]+)\]")
WINDOW = timedelta(days=90)  # the spec's longest and default span for GET requests
MAX_REQUESTS = 1000  # the spec's default query limit
# XML element names of list items, by their list's name (the spec's Spark convention).
ITEMS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
}


class Open311Error(Exception):
    """An error in the spec's format: HTTP status and `[{code, description}]`."""

    def __init__(self, code: int, description: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.headers = headers


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
        node.text = str(value)
    return node


def render(fmt: str, root: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    if fmt == "json":
        content = json.dumps(body, ensure_ascii=False).encode()
    else:
        content = ElementTree.tostring(_element(root, body), encoding="utf-8", xml_declaration=True)
    return Response(content, status_code=status, headers=headers, media_type=FORMATS[fmt])


def w3(moment: datetime | None, clock_zone: Any) -> str | None:
    """A W3C date-time with the district's offset, e.g. 2026-11-02T09:30:00+08:00."""
    return moment.astimezone(clock_zone).isoformat(timespec="seconds") if moment else None


def parse_w3(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Open311Error(400, f"{name} must be a w3 date-time, e.g. 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise Open311Error(400, f"{name} must include a time zone (Z or an offset such as +08:00)")
    return moment


# --- API keys -----------------------------------------------------------------------------


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(db: Database, clock: Clock, name: str) -> str:
    """A new API key for an Open311 client; only its hash is stored, so print it once."""
    key = secrets.token_urlsafe(24)
    async with db.transaction() as s:
        if await s.scalar(select(func.count()).where(open311_keys.c.name == name)):
            raise ValueError(f"an API key named {name!r} exists already; pick another name, or revoke it first")
        await s.execute(open311_keys.insert().values(key_hash=key_hash(key), name=name, created_at=clock.now()))
    return key


async def revoke_api_key(db: Database, name: str) -> bool:
    """Stop accepting the named key and free its name; False if there is no such key."""
    async with db.transaction() as s:
        gone = await s.scalar(delete(open311_keys).where(open311_keys.c.name == name).returning(open311_keys.c.name))
    return gone is not None


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


CLOSED = ("resolved", "closed")


def status_of(case_status: str) -> str:
    """gridcall's statuses onto Open311's: resolved and closed cases are `closed`."""
    return "closed" if case_status in CLOSED else "open"


CLOSING = {
    "satisfied": "Closed: the reporter confirmed the resolution.",
    "no_answer": "Closed: resolved, and the reporter did not answer the satisfaction visit in time.",
    "cancelled": "Closed: withdrawn by the reporter.",
}


def status_note(kind: str | None, details: Mapping[str, Any], view: Any) -> str | None:
    """The last public step of the case, in words; no staff names, no internal notes."""
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
        case "departments_summoned":
            return "Several departments were summoned to handle it jointly."
        case "resolved":
            return f"Resolved: {details['result']}" if details.get("result") else "Resolved."
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


# --- the router ---------------------------------------------------------------------------


def router(store: Store, j: Jurisdiction, policy: Policy, rate_limit: RateLimit) -> APIRouter:
    api = APIRouter(prefix="/open311/v2", tags=["open311"])
    zone = policy.calendar.zone
    clock: Clock = store.clock

    async def respond(
        request: Request, fmt: str, root: str, produce: Callable[[], Awaitable[Any]], *, limited: bool = True
    ) -> Response:
        try:
            if fmt not in FORMATS:
                raise Open311Error(404, f"format {fmt!r} is not served; use .xml or .json")
            given = (request.query_params.get("jurisdiction_id") or "").strip()
            if given and given != j.district.id:
                raise Open311Error(404, f"jurisdiction_id {given!r} not found; this endpoint serves {j.district.id}")
            if limited:
                await rate_limit.hit(request, request.query_params.get("api_key"))
            body = await produce()
        except Open311Error as exc:
            errors = [{"code": exc.code, "description": exc.description}]
            return render(fmt if fmt in FORMATS else "xml", "errors", errors, exc.code, exc.headers)
        except HTTPException as exc:  # the rate limit
            errors = [{"code": exc.status_code, "description": exc.detail}]
            return render(fmt if fmt in FORMATS else "xml", "errors", errors, exc.status_code, exc.headers)
        return render(fmt, root, body)

    def category(code: str) -> CategoryPolicy:
        cat = policy.category(code)
        if cat is None:
            raise Open311Error(404, f"service_code {code!r} was not found; GET services lists them")
        return cat

    def address_of(row: Any) -> str:
        """From most specific to most general, as the spec asks."""
        grid = j.grid(row.grid_id)
        community = j.community(grid.community_id)
        parts = [row.details.get("address"), grid.name, community.name, j.street(community.street_id).name]
        return ", ".join(p for p in [*parts, j.district.name] if p)

    async def requests_where(*conditions: Any, limit: int = MAX_REQUESTS) -> list[dict[str, Any]]:
        first_report = and_(reports.c.case_id == case_views.c.case_id, reports.c.linked.is_(False))
        query = (
            select(case_views, reports.c.description, reports.c.grid_id, reports.c.details)
            .join(reports, first_report)
            .where(*conditions)
            .order_by(case_views.c.created_at.desc())
            .limit(limit)
        )
        async with store.db.sessions() as s:
            rows = (await s.execute(query)).all()
            ids = [r.case_id for r in rows]
            last_ids = select(func.max(timeline.c.id)).where(timeline.c.case_id.in_(ids)).group_by(timeline.c.case_id)
            last = {e.case_id: e for e in await s.execute(select(timeline).where(timeline.c.id.in_(last_ids)))}
        out = []
        for r in rows:
            cat = policy.category(r.category)
            step = last.get(r.case_id)
            media = r.details.get("media_urls") or []
            out.append(
                {
                    "service_request_id": r.case_id,
                    "status": status_of(r.status),
                    "status_notes": status_note(step.type, step.details, r) if step else None,
                    "service_name": cat.name if cat else r.category,
                    "service_code": r.category,
                    "description": r.description,
                    "agency_responsible": r.unit_name,
                    "service_notice": service_notice(cat, policy) if cat else None,
                    "requested_datetime": w3(r.created_at, zone),
                    "updated_datetime": w3(r.updated_at, zone),
                    "expected_datetime": w3(r.resolution_due, zone),
                    "address": address_of(r),
                    "address_id": None,
                    "zipcode": None,
                    "lat": r.lat,
                    "long": r.lon,
                    "media_url": media[0] if media else None,
                }
            )
        return out

    @api.get("/discovery.{fmt}", summary="Service discovery")
    async def discovery(request: Request, fmt: str) -> Response:
        async def produce() -> dict[str, Any]:
            return {
                "changeset": CHANGESET,
                "contact": f"{j.district.name}: the district's service hotline centre",
                "key_service": "API keys for POST requests are issued by the hotline centre "
                "(on the server: gridcall open311-key create NAME)",
                "endpoints": [
                    {
                        "specification": SPECIFICATION,
                        "url": str(request.url_for("discovery", fmt=fmt)).rsplit("/", 1)[0],
                        "changeset": CHANGESET,
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            }

        return await respond(request, fmt, "discovery", produce)

    @api.get("/services.{fmt}", summary="GET Service List")
    async def services(request: Request, fmt: str) -> Response:
        async def produce() -> list[dict[str, Any]]:
            return [service_of(c, j) for c in policy.categories]

        return await respond(request, fmt, "services", produce)

    @api.get("/services/{service_code}.{fmt}", summary="GET Service Definition")
    async def service_definition(request: Request, service_code: str, fmt: str) -> Response:
        async def produce() -> dict[str, Any]:
            return definition_of(category(service_code))

        return await respond(request, fmt, "service_definition", produce)

    @api.post("/requests.{fmt}", summary="POST Service Request (form-encoded, api_key required)")
    async def create_request(request: Request, fmt: str) -> Response:
        async def produce() -> list[dict[str, Any]]:
            try:
                form = await request.form()
            except Exception:
                raise Open311Error(400, "send the request as application/x-www-form-urlencoded") from None
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            lists: dict[str, list[str]] = {}
            for k, v in form.multi_items():
                if isinstance(v, str) and k.endswith("[]"):
                    lists.setdefault(k[:-2], []).append(v)
            await authorise(fields.get("api_key"))
            await rate_limit.hit(request, fields.get("api_key"))  # per key: many residents behind one app
            return [await submit(fields, lists)]

        return await respond(request, fmt, "service_requests", produce, limited=False)

    async def authorise(key: str | None) -> None:
        if not key:
            raise Open311Error(403, "api_key was not provided -- can't proceed with create_request")
        async with store.db.sessions() as s:
            found = await s.scalar(select(func.count()).where(open311_keys.c.key_hash == key_hash(key)))
        if not found:
            raise Open311Error(403, "Invalid api_key received -- can't proceed with create_request")

    async def submit(fields: dict[str, str], lists: dict[str, list[str]]) -> dict[str, Any]:
        code = fields.get("service_code", "").strip()
        if not code:
            raise Open311Error(400, "service_code was not provided; GET services lists them")
        cat = category(code)
        point = location(fields)
        address = (fields.get("address_string") or "").strip() or None
        if point is None and address is None:
            if fields.get("address_id"):
                raise Open311Error(400, "address_id is not known here; send lat and long, or address_string")
            raise Open311Error(400, "a location is required: lat and long, or address_string")
        description = (fields.get("description") or "").strip() or cat.name
        if len(description) > 4000:
            raise Open311Error(400, "description is limited to 4,000 characters")
        media = (fields.get("media_url") or "").strip()
        if media and not media.lower().startswith(("http://", "https://")):
            raise Open311Error(400, "media_url must be an http or https URL")
        try:
            contact = person(fields)
            answer = await file_report(
                store,
                j,
                policy,
                category=cat.code,
                description=description,
                point=point,
                address=address,
                attributes=attributes(cat, fields, lists),
                media_urls=[media] if media else [],
                priority=Priority.NORMAL,
                channel="open311",
                household_flag=None,
                contact=contact,
                idempotency_key=None,
                request_hash=body_hash(repr(sorted(fields.items()))),
            )
        except ReportRejected as exc:
            raise Open311Error(400, str(exc).replace("GET /v1/categories", "GET services")) from None
        notice = service_notice(cat, policy)
        if answer["linked_to_existing"]:
            notice = "This problem was already reported close by; your report joins that request. " + notice
        return {
            "service_request_id": answer["case_id"],
            "service_notice": notice,
            "account_id": fields.get("account_id") or None,
        }

    def location(fields: dict[str, str]) -> Location | None:
        lat, lon = (fields.get("lat") or "").strip(), (fields.get("long") or "").strip()
        if not lat and not lon:
            return None
        if not lat or not lon:
            raise Open311Error(400, "lat and long must both be sent")
        try:
            return Location(lat=float(lat), lon=float(lon))
        except (ValueError, ValidationError):
            raise Open311Error(400, "lat and long must be WGS84 degrees, e.g. lat=30.505&long=114.305") from None

    def person(fields: dict[str, str]) -> dict[str, Any] | None:
        name = " ".join(n for n in (fields.get("first_name", "").strip(), fields.get("last_name", "").strip()) if n)
        given = {"name": name, "phone": fields.get("phone", "").strip(), "email": fields.get("email", "").strip()}
        try:
            contact = Contact(**{k: v for k, v in given.items() if v}).model_dump(exclude_none=True)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise Open311Error(400, f"{problem['loc'][0]} is not valid: {problem['msg']}") from None
        if account := fields.get("account_id", "").strip():
            contact["account_id"] = account
        return contact or None

    def attributes(cat: CategoryPolicy, fields: dict[str, str], lists: dict[str, list[str]]) -> dict[str, Any]:
        """attribute[code]=value and attribute[code][]=value, typed as the definition says."""
        types = {a.code: a.datatype for a in cat.attributes}
        given: dict[str, Any] = {}
        for key, value in fields.items():
            if m := ATTRIBUTE.fullmatch(key):
                given[m[1]] = number(value) if types.get(m[1]) == "number" else value
        for key, values in lists.items():
            if m := ATTRIBUTE.fullmatch(key):
                given[m[1]] = values
        return given

    @api.get("/tokens/{token}.{fmt}", summary="GET service_request_id from a token")
    async def token(request: Request, token: str, fmt: str) -> Response:
        async def produce() -> list[dict[str, Any]]:
            async with store.db.sessions() as s:
                case_id = await s.scalar(select(reports.c.case_id).where(reports.c.tracking_hash == token_hash(token)))
            if case_id is None:
                raise Open311Error(404, "token was not found")
            return [{"service_request_id": case_id, "token": token}]

        return await respond(request, fmt, "service_requests", produce)

    @api.get("/requests.{fmt}", summary="GET Service Requests (90 days / 1,000 requests by default)")
    async def list_requests(request: Request, fmt: str) -> Response:
        async def produce() -> list[dict[str, Any]]:
            q = request.query_params
            if ids := _listed(q.get("service_request_id")):
                return await requests_where(case_views.c.case_id.in_(ids))  # overrides all other arguments
            start = parse_w3("start_date", q["start_date"]) if q.get("start_date") else None
            end = parse_w3("end_date", q["end_date"]) if q.get("end_date") else None
            if start and end and start > end:
                raise Open311Error(400, "start_date is after end_date")
            if start and end and end - start > WINDOW:
                raise Open311Error(400, "start_date and end_date may not span more than 90 days")
            if start is None:
                end = end or clock.now()
                start = end - WINDOW
            elif end is None:
                end = start + WINDOW
            conditions = [case_views.c.created_at >= start, case_views.c.created_at <= end]
            if codes := _listed(q.get("service_code")):
                conditions.append(case_views.c.category.in_(codes))
            if statuses := _listed(q.get("status")):
                if unknown := set(statuses) - {"open", "closed"}:
                    raise Open311Error(400, f"status {sorted(unknown)[0]!r} is not one of: open, closed")
                if set(statuses) == {"closed"}:
                    conditions.append(case_views.c.status.in_(CLOSED))
                elif set(statuses) == {"open"}:
                    conditions.append(case_views.c.status.not_in(CLOSED))
            return await requests_where(*conditions)

        return await respond(request, fmt, "service_requests", produce)

    @api.get("/requests/{service_request_id}.{fmt}", summary="GET Service Request")
    async def one_request(request: Request, service_request_id: str, fmt: str) -> Response:
        async def produce() -> list[dict[str, Any]]:
            found = await requests_where(case_views.c.case_id == service_request_id, limit=1)
            if not found:
                raise Open311Error(404, f"service_request_id {service_request_id!r} was not found")
            return found

        return await respond(request, fmt, "service_requests", produce)

    @api.api_route("/{anything:path}", methods=["GET", "POST"], include_in_schema=False)
    async def unknown(request: Request, anything: str) -> Response:
        async def produce() -> None:
            raise Open311Error(404, f"no such resource: {anything!r}; see discovery.xml")

        return await respond(request, "xml", "errors", produce)

    return api


def _listed(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the definition's check says what is expected
    return int(value) if value.is_integer() else value
