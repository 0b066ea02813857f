"""Pure routing and case transitions: state and event in, new state and events out."""

from dataclasses import dataclass, replace
from enum import StrEnum

from services.events import (
    CaseAssigned,
    CaseClaimed,
    CaseReported,
    CaseResolved,
    Event,
    Priority,
    TicketClaimed,
    TicketResolved,
    Tier,
)
from services.jurisdiction import Jurisdiction, Unit


class CaseStatus(StrEnum):
    ASSIGNED = "assigned"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class DispatchError(Exception):
    pass


class UnroutableCase(DispatchError):
    pass


class InvalidTransition(DispatchError):
    pass


@dataclass(frozen=True)
class Case:
    case_id: str
    category: str
    description: str
    grid_id: str
    priority: Priority
    status: CaseStatus
    tier: Tier
    unit_id: str
    assignment_id: str


def handling_unit(j: Jurisdiction, *, category: str, grid_id: str, tier: Tier) -> Unit:
    """The unit that handles a case of this category, from this grid, at this tier."""
    cat = j.category(category)
    if cat is None:
        raise UnroutableCase(f"unknown category {category!r}")
    grid = j.grid(grid_id)
    community = j.community(grid.community_id)
    unit_id = {
        Tier.GRID: grid.unit_id,
        Tier.COMMUNITY: community.unit_id,
        Tier.STREET: j.street(community.street_id).unit_id,
        Tier.BUREAU: cat.departments[0],
    }[tier]
    unit = j.unit(unit_id)
    if unit is None:
        raise UnroutableCase(f"no unit {unit_id!r} for {category} at {tier} tier of grid {grid_id}")
    return unit


def dispatch(j: Jurisdiction, reported: CaseReported, assignment_id: str) -> tuple[Case, list[Event]]:
    """A reported case goes to the unit of its category's starting tier."""
    cat = j.category(reported.category)
    if cat is None:
        raise UnroutableCase(f"unknown category {reported.category!r}")
    unit = handling_unit(j, category=cat.code, grid_id=reported.grid_id, tier=cat.start_tier)
    case = Case(
        case_id=reported.case_id,
        category=cat.code,
        description=reported.description,
        grid_id=reported.grid_id,
        priority=reported.priority,
        status=CaseStatus.ASSIGNED,
        tier=cat.start_tier,
        unit_id=unit.id,
        assignment_id=assignment_id,
    )
    assigned = CaseAssigned(
        case_id=case.case_id,
        assignment_id=assignment_id,
        unit_id=unit.id,
        unit_name=unit.name,
        tier=case.tier,
        category=case.category,
        description=case.description,
        grid_id=case.grid_id,
    )
    return case, [assigned]


def claim(case: Case, event: TicketClaimed) -> tuple[Case, list[Event]]:
    _check_current(case, event.ticket_id)
    if case.status is not CaseStatus.ASSIGNED:
        raise InvalidTransition(f"case {case.case_id} is {case.status}, cannot be claimed")
    claimed = replace(case, status=CaseStatus.CLAIMED)
    return claimed, [CaseClaimed(case_id=case.case_id, assignment_id=case.assignment_id, unit_id=case.unit_id)]


def resolve(case: Case, event: TicketResolved) -> tuple[Case, list[Event]]:
    _check_current(case, event.ticket_id)
    if case.status is not CaseStatus.CLAIMED:
        raise InvalidTransition(f"case {case.case_id} is {case.status}, cannot be resolved")
    resolved = replace(case, status=CaseStatus.RESOLVED)
    return resolved, [
        CaseResolved(
            case_id=case.case_id,
            assignment_id=case.assignment_id,
            unit_id=case.unit_id,
            note=event.note,
        )
    ]


def _check_current(case: Case, ticket_id: str) -> None:
    if ticket_id != case.assignment_id:
        raise InvalidTransition(
            f"ticket {ticket_id} is not the current assignment {case.assignment_id} of case {case.case_id}"
        )
