"""gridcall onto Open311 and back: categories as services, a POST's form fields as a report,
cases and their steps as service requests and updates (showing the resident's own words only
where the package's docstring says). Pure: no database, no HTTP."""

import re
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from intake.domain import Report
from intake.open311.formats import w3
from intake.schemas import Contact
from services.district.errors import BadRequest, NotFound
from services.district.events import Location, Priority
from services.district.jurisdiction import Jurisdiction
from services.district.policy import CategoryPolicy, Policy
from services.district.text import words

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
ATTRIBUTE = re.compile(r"attribute\[([^\]]+)\](\[\])?")
CLOSED = ("resolved", "closed")


# --- services -----------------------------------------------------------------------------


def discovery_of(url: str, changeset: datetime, zone: Any, j: Jurisdiction) -> dict[str, Any]:
    stamp = w3(changeset, zone)
    return {
        "changeset": stamp,
        "contact": f"{j.district.name}: the district's service hotline centre",
        "key_service": "API keys for POST requests are issued by the hotline centre "
        "(on the server: gridcall open311-key create NAME)",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": url,
                "changeset": stamp,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


def category(policy: Policy, code: str) -> CategoryPolicy:
    cat = policy.category(code)
    if cat is None:
        raise NotFound(f"service_code {code!r} was not found; GET services lists them")
    return cat


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


# --- a POST's form fields as a report -----------------------------------------------------


def report_of(policy: Policy, fields: dict[str, str], form: list[tuple[str, str]]) -> tuple[CategoryPolicy, Report]:
    """The service asked for and the report the form describes; BadRequest naming the field
    that cannot be taken as sent."""
    code = fields.get("service_code", "").strip()
    if not code:
        raise BadRequest("service_code was not provided; GET services lists them")
    cat = category(policy, code)
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
    return cat, Report(
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


def created(answer: Mapping[str, Any], cat: CategoryPolicy, policy: Policy, fields: dict[str, str]) -> dict[str, Any]:
    """The answer to a POST: the case the report was filed as (or joined)."""
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


def text(fields: Mapping[str, str], name: str) -> str:
    """A free-text form field, checked as every free text is (services/district/text.py)."""
    try:
        return words(fields.get(name) or "")
    except ValueError as exc:
        raise BadRequest(f"{name} {exc}") from None


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the definition's check says what is expected
    return int(value) if value.is_integer() else value  # nan and inf stay floats; the check refuses them


# --- cases as service requests ------------------------------------------------------------


def status_of(case_status: str) -> str:
    """gridcall's statuses onto Open311's: resolved and closed cases are `closed`."""
    return "closed" if case_status in CLOSED else "open"


def published(r: Any, policy: Policy, j: Jurisdiction) -> dict[str, Any]:
    """One case (a row of queries.requests_where) as a service request, showing the resident's
    own words only where public."""
    zone = policy.calendar.zone
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


def update_of(row: Any, status: str, j: Jurisdiction, zone: Any) -> dict[str, Any]:
    """One public step (a row of queries.steps) as FixMyStreet's request update."""
    return {
        "update_id": str(row.id),
        "service_request_id": row.case_id,
        "status": status,
        "updated_datetime": w3(row.at, zone),
        "description": status_note(row.type, row.details or {}, step_view(row, j)),
        "media_url": None,
    }


def step_view(row: Any, j: Jurisdiction) -> Any:
    """What `status_note` reads of the case, as it was at this step where the step says."""
    unit = j.unit(row.details.get("unit_id", "")) if isinstance(row.details, dict) else None
    return SimpleNamespace(unit_name=unit.name if unit else row.view_unit_name, tier=row.view_tier)


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
