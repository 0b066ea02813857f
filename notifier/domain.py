"""Who hears what: a lifecycle event of a case becomes notices (a kind of message, for an
audience, with the facts it states). Pure: the names come from `Names`, what the notifier
knows of the case from `CaseFacts`; recording, rendering and sending are elsewhere
(notifier/repository.py, notifier/messages.py, services/delivery/)."""

from dataclasses import dataclass, replace
from datetime import datetime

from notifier.messages import Audience, Facts, Kind, Name
from services.district.events import (
    CaseAssigned,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseFollowed,
    CaseNoted,
    CaseReopened,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    DeliveryFailed,
    Event,
    NoteVisibility,
    Priority,
    Role,
)
from services.district.jurisdiction import Jurisdiction, Named, label
from services.district.policy import Policy


class Names:
    """The district's names in both languages (the Chinese one where the district file has it)."""

    def __init__(self, jurisdiction: Jurisdiction, policy: Policy) -> None:
        self.units = {u.id: _name(u) for u in jurisdiction.units}
        self.grids = {g.id: _name(g) for g in jurisdiction.grids}
        self.categories = {c.code: _name(c) for c in policy.categories}

    def unit(self, unit_id: str) -> Name:
        return self.units.get(unit_id) or Name(unit_id, unit_id)

    def grid(self, grid_id: str | None) -> Name | None:
        return None if grid_id is None else self.grids.get(grid_id) or Name(grid_id, grid_id)

    def category(self, code: str | None) -> Name | None:
        return None if code is None else self.categories.get(code) or Name(code, code)


def _name(thing: Named) -> Name:
    return Name(zh=label(thing, "zh-CN"), en=label(thing, "en"))


# Why an assignment arrived, as the dispatcher words it (dispatcher/domain.py ARRIVALS, the
# whistle, the reopening), to the code a message says in plain words in either language.
ARRIVED = (
    ("escalated from", "breach"),
    ("上报", "handler"),
    ("退单", "returned"),
    ("reassigned", "reassigned"),
    ("吹哨", "whistled"),
    ("reopened", "reopened"),
)


def arrival(reason: str) -> str:
    return next((code for start, code in ARRIVED if reason.startswith(start)), "")


@dataclass(frozen=True)
class CaseFacts:
    """What the notifier keeps of a case to word later messages (notifier_cases)."""

    case_id: str
    category: str | None = None
    grid_id: str | None = None
    priority: Priority = Priority.NORMAL
    lead_unit_id: str | None = None  # who leads it now (a summons names them)

    @property
    def urgent(self) -> bool:
        return self.priority is Priority.EMERGENCY


class To:
    """Whom a notice is for: the case's residents, one of them, a unit's duty address, or ops."""

    RESIDENTS = "residents"
    OPS = "ops"

    @staticmethod
    def unit(unit_id: str) -> str:
        return f"unit:{unit_id}"

    @staticmethod
    def follower(report_id: str) -> str:
        return f"follower:{report_id}"


@dataclass(frozen=True)
class Notice:
    to: str  # a To value
    facts: Facts
    urgent: bool = False  # goes at once: never held by quiet hours, never put in a digest
    digest: bool = False  # a new ticket: may wait for its unit's digest


def notices(event: Event, case: CaseFacts, names: Names, policy: Policy, at: datetime) -> list[Notice]:
    """What `event` (which happened at `at`) tells whom."""
    base = Facts(
        kind=Kind.RECEIVED,
        audience=Audience.RESIDENT,
        case_id=event.case_id,
        category=names.category(case.category),
        grid=names.grid(case.grid_id),
        priority=case.priority,
        at=at,
    )

    def resident(kind: Kind, **facts: object) -> Notice:
        return Notice(To.RESIDENTS, replace(base, kind=kind, **facts), urgent=case.urgent)  # type: ignore[arg-type]

    def staff(unit_id: str, kind: Kind, urgent: bool, **facts: object) -> Notice:
        told = replace(base, kind=kind, audience=Audience.STAFF, unit=names.unit(unit_id), **facts)  # type: ignore[arg-type]
        return Notice(To.unit(unit_id), told, urgent=urgent)

    match event:
        case CaseFollowed():
            return [Notice(To.follower(event.report_id), base, urgent=case.urgent)]
        case CaseAssigned():
            lead = event.role is Role.LEAD
            urgent = event.priority is Priority.EMERGENCY or not lead  # a summons is answered at once
            ticket = staff(
                event.unit_id,
                Kind.TICKET_NEW if lead else Kind.SUMMONED,
                urgent,
                other_unit=None if lead else names.unit(case.lead_unit_id or event.unit_id),
                tier=event.tier,
                priority=event.priority,
                category=names.category(event.category),
                grid=names.grid(event.grid_id),
                due=event.response_due,
                ticket_id=event.assignment_id,
                reason=arrival(event.reason),
            )
            if not lead:
                return [ticket]
            told = resident(
                Kind.ASSIGNED,
                unit=names.unit(event.unit_id),
                tier=event.tier,
                due=event.response_due,
                resolution_due=event.resolution_due,
            )
            return [told, replace(ticket, digest=not urgent)]
        case CaseClaimed(role=Role.LEAD):
            return [resident(Kind.CLAIMED, unit=names.unit(event.unit_id))]
        case CaseNoted(visibility=NoteVisibility.PUBLIC, url=None):
            return [resident(Kind.NOTED, unit=names.unit(event.unit_id), note=event.text)]
        case CaseResolved():
            visit_until = policy.calendar.add(at, policy.satisfaction_window)
            return [
                resident(Kind.RESOLVED, unit=names.unit(event.unit_id), note=event.note),
                resident(Kind.VISIT, due=visit_until),
            ]
        case CaseClosed():
            return [resident(Kind.CANCELLED if event.reason == "cancelled" else Kind.CLOSED, reason=event.reason)]
        case CaseReopened():
            return [
                resident(Kind.REOPENED, unit=names.unit(event.unit_id)),
                staff(event.unit_id, Kind.REOPENED, True, note=event.comment),
            ]
        case CaseEscalated():
            return [
                resident(
                    Kind.ESCALATED, unit=names.unit(event.to_unit_id), tier=event.to_tier, reason=event.reason.value
                )
            ]
        case DeliveryFailed():
            dead = replace(
                base,
                kind=Kind.DELIVERY_DEAD,
                audience=Audience.OPS,
                unit=names.unit(event.unit_id),
                reason=event.reason,
            )
            return [Notice(To.OPS, dead, urgent=True)]
        case CaseSlaWarning():
            return [
                staff(
                    event.unit_id,
                    Kind.SLA_WARNING,
                    True,
                    tier=event.tier,
                    clock=event.clock,
                    due=event.due_at,
                    ticket_id=event.assignment_id,
                )
            ]
        case CaseSlaBreached():
            late = int(event.late_seconds // 60)
            alerts: list[Notice] = []
            if event.repeat == 0:
                alerts.append(
                    staff(
                        event.unit_id,
                        Kind.SLA_BREACHED,
                        True,
                        tier=event.tier,
                        clock=event.clock,
                        due=event.due_at,
                        late_minutes=late,
                        ticket_id=event.assignment_id,
                    )
                )
            if event.supervised:
                alert = replace(
                    base,
                    kind=Kind.SUPERVISION,
                    audience=Audience.OPS,
                    unit=names.unit(event.unit_id),
                    tier=event.tier,
                    clock=event.clock,
                    due=event.due_at,
                    late_minutes=late,
                    repeat=event.repeat,
                    ticket_id=event.assignment_id,
                )
                alerts.append(Notice(To.OPS, alert, urgent=True))
            return alerts
    return []
