"""Intake rules: what a valid report is, and how lifecycle events change the resident's view."""

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.district.errors import Conflict, Invalid
from services.district.events import (
    CaseAssigned,
    CaseCancelRefused,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseNoted,
    CaseReopened,
    CaseResolved,
    CaseWhistled,
    Event,
    Location,
    NoteVisibility,
    Priority,
    Role,
)
from services.district.jurisdiction import Grid, Jurisdiction
from services.district.policy import CategoryPolicy, Policy


class CaseStatus(StrEnum):
    RECEIVED = "received"
    ASSIGNED = "assigned"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ReportRejected(Invalid):
    """A report that cannot be accepted as sent; `field` names what to fix."""

    def __init__(self, field: str, message: str, kind: str) -> None:
        super().__init__(message, loc=("body", field), kind=kind)
        self.field = field
        self.kind = kind


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class CaseConflict(Conflict):
    """The case's state does not allow what was asked (e.g. answering before it is resolved)."""

    code = "case_conflict"


@dataclass(frozen=True)
class Place:
    """Where a report is: its grid, a point for the map, and the address if one was given."""

    grid: Grid
    point: Location
    address: str | None = None


def locate(j: Jurisdiction, *, point: Location | None, address: str | None, grid_id: str | None) -> Place:
    """A report's place from coordinates, an address in the address table, or a grid id.
    An address sent along with coordinates only describes the place."""
    if point is not None:
        grid = j.locate(point.lat, point.lon)
        if grid is None:
            raise ReportRejected(
                "location",
                f"location ({point.lat}, {point.lon}) is outside every grid of {j.district.name}; "
                "check the coordinates (GET /v1/grids lists the covered grids)",
                "outside_jurisdiction",
            )
        return Place(grid, point, address.strip() if address else None)
    if address is not None:
        grid = j.grid_at_address(address)
        if grid is None:
            raise ReportRejected(
                "location",
                f"address {address!r} is not in the address table; give coordinates (lat, lon) or a grid_id instead",
                "unknown_address",
            )
        return Place(grid, _centre(grid), address.strip())
    grid = j.find_grid(grid_id or "")
    if grid is None:
        raise ReportRejected("location", f"no grid {grid_id!r} (GET /v1/grids lists them)", "unknown_grid")
    return Place(grid, _centre(grid))


def _centre(grid: Grid) -> Location:
    c = grid.shape.centroid
    return Location(lat=round(c.y, 6), lon=round(c.x, 6))


def check_category(policy: Policy, category: str, attributes: dict[str, Any]) -> tuple[CategoryPolicy, dict[str, Any]]:
    cat = policy.category(category)
    if cat is None:
        codes = ", ".join(c.code for c in policy.categories)
        raise ReportRejected(
            "category", f"unknown category {category!r}; use one of: {codes} (GET /v1/categories)", "unknown_category"
        )
    values, problems = cat.check_attributes(attributes)
    if problems:
        code, what = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ReportRejected(f"attributes.{code}", f"attribute {code!r}: {what}{more}", "invalid_attribute")
    return cat, values


@dataclass(frozen=True)
class Report:
    """A report as a channel sends it (the residents' API, Open311), before any check.
    `request_hash` identifies the body an `idempotency_key` was first used with."""

    category: str
    description: str
    channel: str
    priority: Priority = Priority.NORMAL
    point: Location | None = None
    address: str | None = None
    grid_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    media_urls: list[str] = field(default_factory=list)
    anonymous: bool = False
    insist: bool = False
    household_flag: str | None = None
    contact: dict[str, Any] | None = None
    idempotency_key: str | None = None
    request_hash: str = ""


@dataclass(frozen=True)
class Filing:
    """A report that passed every check needing no database: the category's code and
    answers, its place and grid. What is left to decide (a new case or an open one, an
    earlier answer to the same key) needs what other reports wrote, so the writer decides it."""

    report: Report
    category: str
    place: Place
    details: dict[str, Any]


def check_report(j: Jurisdiction, policy: Policy, report: Report) -> Filing:
    """The checks of a report that need no I/O, done in its own request before it queues."""
    cat, values = check_category(policy, report.category, report.attributes)
    place = locate(j, point=report.point, address=report.address, grid_id=report.grid_id)
    details: dict[str, Any] = {"attributes": values, "media_urls": report.media_urls}
    if place.address:
        details["address"] = place.address
    return Filing(report, cat.code, place, details)


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance in metres (haversine)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def degrees_around(point: Location, metres: float) -> tuple[float, float]:
    """Half-widths (lat, lon) in degrees of a box that holds every point within `metres`."""
    dlat = metres / 111_320
    return dlat, dlat / max(math.cos(math.radians(point.lat)), 1e-6)


OPEN_STATUSES = ("received", "assigned", "claimed")


def new_tracking_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, stored_hash: str) -> bool:
    return token is not None and hmac.compare_digest(token_hash(token), stored_hash)


@dataclass(frozen=True)
class ViewChange:
    """`stamped`: columns set to the time of the event."""

    status: CaseStatus | None
    timeline_type: str | None
    columns: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    stamped: tuple[str, ...] = ()


class Satisfaction(StrEnum):
    """The outcome of a resolution's satisfaction visit (回访)."""

    SATISFIED = "satisfied"
    UNSATISFIED = "unsatisfied"
    NO_ANSWER = "no_answer"


# A closing reason that tells the visit's outcome; a cancelled case was never resolved.
CLOSING_OUTCOMES = {"satisfied": Satisfaction.SATISFIED, "no_answer": Satisfaction.NO_ANSWER}
UNRESOLVED: dict[str, Any] = {"resolved_at": None, "resolved_unit_id": None, "result_note": None, "satisfaction": None}


TIMELINE_MOVES = {"returned": "redispatched", "reassigned": "reassigned"}


def view_change(event: Event) -> ViewChange | None:
    """How a lifecycle event shows in the resident's view of the case: public facts only,
    no staff names, no internal notes or warnings."""
    match event:
        case CaseAssigned(role=Role.LEAD):
            where = {"tier": event.tier.value, "unit_id": event.unit_id, "unit_name": event.unit_name}
            due = {"response_due": event.response_due, "resolution_due": event.resolution_due}
            return ViewChange(CaseStatus.ASSIGNED, "assigned", {**where, **due}, where)
        case CaseAssigned():
            return ViewChange(None, "co_handler_assigned", {}, {"unit_id": event.unit_id, "unit_name": event.unit_name})
        case CaseClaimed(role=Role.LEAD):
            return ViewChange(CaseStatus.CLAIMED, "claimed", {}, {"unit_id": event.unit_id})
        case CaseResolved():
            result = {"resolved_unit_id": event.unit_id, "result_note": event.note, "satisfaction": None}
            details = {"unit_id": event.unit_id, "result": event.note}
            return ViewChange(CaseStatus.RESOLVED, "resolved", result, details, stamped=("resolved_at",))
        case CaseClosed():
            outcome = CLOSING_OUTCOMES.get(event.reason)
            outcomes = {"satisfaction": outcome.value} if outcome else {}
            return ViewChange(CaseStatus.CLOSED, "closed", outcomes, {"reason": event.reason}, stamped=("closed_at",))
        case CaseReopened():
            columns = {"satisfaction_answered_at": None, **UNRESOLVED}
            return ViewChange(None, "reopened", columns, {"unit_id": event.unit_id})
        case CaseEscalated():
            return ViewChange(
                None,
                TIMELINE_MOVES.get(event.reason, "escalated"),
                {},
                {"from_tier": event.from_tier.value, "to_tier": event.to_tier.value, "to_unit_id": event.to_unit_id},
            )
        case CaseNoted(visibility=NoteVisibility.PUBLIC):
            return ViewChange(None, "note", {}, {"unit_id": event.unit_id, "note": event.text})
        case CaseCancelRefused():
            return ViewChange(None, "cancel_refused", {"cancel_requested_at": None}, {"reason": event.reason})
        case CaseWhistled():
            units = [event.lead_unit_id, *event.co_unit_ids]
            return ViewChange(None, "departments_summoned", {}, {"lead_unit_id": event.lead_unit_id, "unit_ids": units})
    return None
