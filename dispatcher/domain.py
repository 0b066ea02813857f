"""The routing core, pure: a case and an event (or a moment in time) in, the new case and the
events it records out. No database, no bus, no clock of its own: `now` and new ids are given.

A case has assignments; at most one open *lead* assignment at a time, plus co-handlers after
a whistle. Each open assignment runs two SLA clocks (response: until claimed; resolution:
until resolved). The timers a case needs are derived from its state (`timers`), so they can
never disagree with it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.district.events import (
    Actor,
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseHandlerReported,
    CaseNoted,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseReturned,
    CaseSatisfactionAnswered,
    CaseSlaBreached,
    CaseSlaWarning,
    CaseUnassigned,
    CaseUnclaimed,
    CaseWhistled,
    EscalationReason,
    Event,
    Location,
    Priority,
    Role,
    SlaClock,
    TicketClaimed,
    TicketEscalated,
    TicketNoted,
    TicketReassigned,
    TicketResolved,
    TicketReturned,
    TicketUnclaimed,
    TicketWhistled,
    Tier,
)
from services.district.jurisdiction import Grid, Jurisdiction, Unit, UnitKind
from services.district.policy import CategoryPolicy, Handler, Policy, next_tier

NewId = Callable[[], str]

# Why a moved case arrived at its new unit, as the receiving handler reads it.
ARRIVALS = {
    EscalationReason.BREACH: "escalated from {unit} ({tier} tier): {note}",
    EscalationReason.HANDLER: "上报 escalated by {unit} ({tier} tier): {note}",
    EscalationReason.RETURNED: "退单 returned by {unit} ({tier} tier): {note}",
    EscalationReason.REASSIGNED: "reassigned from {unit} by a supervisor: {note}",
}


class CaseStatus(StrEnum):
    ASSIGNED = "assigned"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    CLOSED = "closed"


class AssignmentStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    ENDED = "ended"  # escalated, returned or whistled away, unresolved

    @property
    def active(self) -> bool:
        return self in (AssignmentStatus.OPEN, AssignmentStatus.CLAIMED)


class TimerKind(StrEnum):
    RESPONSE_WARNING = "response_warning"
    RESPONSE_BREACH = "response_breach"
    RESOLUTION_WARNING = "resolution_warning"
    RESOLUTION_BREACH = "resolution_breach"
    SUPERVISION = "supervision"
    SATISFACTION_WINDOW = "satisfaction_window"


class DispatchError(Exception):
    pass


class UnroutableCase(DispatchError):
    pass


class InvalidTransition(DispatchError):
    code = "case_conflict"


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    unit_id: str
    tier: Tier
    role: Role
    status: AssignmentStatus
    assigned_at: datetime
    response_due: datetime
    resolution_due: datetime
    response_warn_at: datetime
    resolution_warn_at: datetime
    response_warned: bool = False
    resolution_warned: bool = False
    response_breached: bool = False
    resolution_breached: bool = False
    next_alert_at: datetime | None = None
    alerts: int = 0
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    end_reason: str | None = None
    ended_at: datetime | None = None  # when it ended unresolved (its case.unassigned)
    note: str | None = None

    def overdue(self, now: datetime) -> SlaClock | None:
        """The clock this assignment has missed and not yet satisfied, if any."""
        if self.status is AssignmentStatus.OPEN and now >= self.response_due:
            return SlaClock.RESPONSE
        if self.status.active and now >= self.resolution_due:
            return SlaClock.RESOLUTION
        return None


@dataclass(frozen=True)
class Case:
    case_id: str
    category: str
    description: str
    grid_id: str
    priority: Priority
    assignments: tuple[Assignment, ...]
    location: Location | None = None  # None for a case stored before locations were kept
    returns: int = 0
    supervised: bool = False
    resolved: bool = False
    closed: bool = False
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def lead(self) -> Assignment:
        """The newest lead assignment: the one that owns the case now (or last did)."""
        return next(a for a in reversed(self.assignments) if a.role is Role.LEAD)

    @property
    def status(self) -> CaseStatus:
        if self.closed:
            return CaseStatus.CLOSED
        if self.resolved:
            return CaseStatus.RESOLVED
        return CaseStatus.ASSIGNED if self.lead.status is AssignmentStatus.OPEN else CaseStatus.CLAIMED

    @property
    def active(self) -> list[Assignment]:
        return [a for a in self.assignments if a.status.active]

    def assignment(self, assignment_id: str) -> Assignment:
        for a in self.assignments:
            if a.assignment_id == assignment_id:
                return a
        raise InvalidTransition(f"case {self.case_id} has no assignment {assignment_id}")

    def with_assignment(self, changed: Assignment) -> "Case":
        return replace(
            self,
            assignments=tuple(changed if a.assignment_id == changed.assignment_id else a for a in self.assignments),
        )


@dataclass(frozen=True)
class Timer:
    assignment_id: str
    kind: TimerKind
    due_at: datetime


@dataclass(frozen=True)
class Decision:
    case: Case
    events: list[Event] = field(default_factory=list)


Step = Callable[[Case | None, Any, datetime, NewId], Decision]


def timers(case: Case, policy: Policy) -> list[Timer]:
    """Every timer the case needs now; everything else is cancelled."""
    out: list[Timer] = []
    if case.closed:
        return out
    if case.resolved:
        assert case.resolved_at is not None
        closes = policy.calendar.add(case.resolved_at, policy.satisfaction_window)
        return [Timer(case.lead.assignment_id, TimerKind.SATISFACTION_WINDOW, closes)]
    for a in case.active:
        if a.status is AssignmentStatus.OPEN:
            if not a.response_warned:
                out.append(Timer(a.assignment_id, TimerKind.RESPONSE_WARNING, a.response_warn_at))
            if not a.response_breached:
                out.append(Timer(a.assignment_id, TimerKind.RESPONSE_BREACH, a.response_due))
        if not a.resolution_warned:
            out.append(Timer(a.assignment_id, TimerKind.RESOLUTION_WARNING, a.resolution_warn_at))
        if not a.resolution_breached:
            out.append(Timer(a.assignment_id, TimerKind.RESOLUTION_BREACH, a.resolution_due))
        if a.next_alert_at is not None:
            out.append(Timer(a.assignment_id, TimerKind.SUPERVISION, a.next_alert_at))
    return out


class Router:
    """Routing rules over one jurisdiction and one policy.

    Every step has one shape, `(case, event, now, new_id) -> Decision` (a `Step`): the case as
    it is (None for one the dispatcher has not seen), what happened (an event, or a `Timer` for
    `fire`), the time, and where new assignment ids come from."""

    def __init__(self, jurisdiction: Jurisdiction, policy: Policy) -> None:
        self.j = jurisdiction
        self.policy = policy

    def timers(self, case: Case) -> list[Timer]:
        return timers(case, self.policy)

    # -- routing ---------------------------------------------------------------------------

    def handling_unit(self, case: Case, tier: Tier) -> Unit:
        """The unit that handles the case at this tier, from its category, grid and location."""
        cat = self.policy.category(case.category)
        if cat is None:
            raise UnroutableCase(f"unknown category {case.category!r}")
        grid = self.j.grid(case.grid_id)
        community = self.j.community(grid.community_id)
        match tier:
            case Tier.GRID:
                unit_id = self._grid_tier_unit(cat, grid, case.location)
            case Tier.COMMUNITY:
                unit_id = community.unit_id
            case Tier.STREET:
                unit_id = self.j.street(community.street_id).unit_id
            case Tier.BUREAU:
                unit_id = cat.departments[0]
        unit = self.j.unit(unit_id)
        if unit is None:
            raise UnroutableCase(f"no unit {unit_id!r} for {case.category} at {tier} tier of grid {case.grid_id}")
        return unit

    def _grid_tier_unit(self, cat: CategoryPolicy, grid: Grid, location: Location | None) -> str:
        """The grid worker, unless the category names another handler at the grid tier: the
        property company of the compound the case lies in (红色物业), or the volunteer pool of
        the case's community or street (群众点单, 微心愿). Where there is none, the grid worker."""
        if cat.handler is Handler.PROPERTY and location is not None:
            compound = self.j.compound_at(location.lat, location.lon)
            if compound is not None:
                return compound.property_unit_id
        if cat.handler is Handler.POOL:
            pool = self.j.pool_for(grid.community_id, cat.pool_level)
            if pool is not None:
                return pool.id
        return grid.unit_id

    def _assign(
        self, case: Case, unit: Unit, tier: Tier, role: Role, now: datetime, new_id: NewId, reason: str = ""
    ) -> tuple[Case, CaseAssigned]:
        """A new assignment with fresh clocks; `reason` tells the unit why the case came to it."""
        sla = self.policy.tier_sla(case.category, case.priority, tier)
        cal, warn = self.policy.calendar, self.policy.warning_at
        a = Assignment(
            assignment_id=new_id(),
            unit_id=unit.id,
            tier=tier,
            role=role,
            status=AssignmentStatus.OPEN,
            assigned_at=now,
            response_due=cal.add(now, sla.response),
            resolution_due=cal.add(now, sla.resolution),
            response_warn_at=cal.add(now, sla.response.scaled(warn)),
            resolution_warn_at=cal.add(now, sla.resolution.scaled(warn)),
        )
        event = CaseAssigned(
            case_id=case.case_id,
            assignment_id=a.assignment_id,
            unit_id=unit.id,
            unit_name=unit.name,
            tier=tier,
            role=role,
            priority=case.priority,
            category=case.category,
            description=case.description,
            grid_id=case.grid_id,
            details=case.details,
            response_due=a.response_due,
            resolution_due=a.resolution_due,
            reason=reason,
            location=case.location,
        )
        return replace(case, assignments=(*case.assignments, a)), event

    def _end(self, case: Case, a: Assignment, reason: str, now: datetime) -> tuple[Case, CaseUnassigned]:
        ended = replace(a, status=AssignmentStatus.ENDED, end_reason=reason, ended_at=now, next_alert_at=None)
        return case.with_assignment(ended), CaseUnassigned(
            case_id=case.case_id, assignment_id=a.assignment_id, unit_id=a.unit_id, reason=reason
        )

    def _move(
        self,
        case: Case,
        a: Assignment,
        to: tuple[Unit, Tier],
        why: tuple[EscalationReason, str],
        now: datetime,
        new_id: NewId,
        by: Actor | None = None,
    ) -> tuple[Case, list[Event]]:
        """End assignment `a` and give the case to another unit and tier, with fresh clocks."""
        (unit, tier), (reason, note) = to, why
        ended = reason.value if reason in (EscalationReason.RETURNED, EscalationReason.REASSIGNED) else "escalated"
        case, unassigned = self._end(case, a, ended, now)
        case = replace(case, supervised=False)
        arrived = ARRIVALS[reason].format(unit=a.unit_id, tier=a.tier.value, note=note)
        case, assigned = self._assign(case, unit, tier, Role.LEAD, now, new_id, arrived)
        escalated = CaseEscalated(
            case_id=case.case_id,
            from_tier=a.tier,
            from_unit_id=a.unit_id,
            to_tier=tier,
            to_unit_id=unit.id,
            reason=reason,
            note=note,
            by=by,
        )
        return case, [escalated, unassigned, assigned]

    # -- events ----------------------------------------------------------------------------

    def report(self, case: Case | None, event: CaseReported, now: datetime, new_id: NewId) -> Decision:
        """A reported case goes to the unit of its starting tier: the category's, or the
        emergency tier for emergencies; a flagged household raises the priority. A case routed
        already (its report delivered again) stays as it is."""
        if case is not None:
            return Decision(case)
        if self.policy.category(event.category) is None:
            raise UnroutableCase(f"unknown category {event.category!r}")
        priority = self.policy.effective_priority(event.priority, event.household_flag, event.channel)
        tier = self.policy.start_tier(event.category, priority)
        new = Case(
            case_id=event.case_id,
            category=event.category,
            description=event.description,
            grid_id=event.grid_id,
            priority=priority,
            assignments=(),
            location=event.location,
            details=event.details,
        )
        unit = self.handling_unit(new, tier)
        new, assigned = self._assign(new, unit, tier, Role.LEAD, now, new_id)
        return Decision(new, [assigned])

    def claim(self, case: Case | None, event: TicketClaimed, now: datetime, new_id: NewId) -> Decision:
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.status is not AssignmentStatus.OPEN:
            raise InvalidTransition(f"assignment {a.assignment_id} is {a.status}, cannot be claimed")
        # Claiming satisfies the response clock; supervision goes on only if resolution is late too.
        alerting = a.next_alert_at if a.resolution_breached else None
        a = replace(a, status=AssignmentStatus.CLAIMED, claimed_at=now, next_alert_at=alerting)
        case = case.with_assignment(a)
        if not any(x.next_alert_at for x in case.active):
            case = replace(case, supervised=False)
        claimed = CaseClaimed(
            case_id=case.case_id, assignment_id=a.assignment_id, unit_id=a.unit_id, role=a.role, by=event.by
        )
        return Decision(case, [claimed])

    def unclaim(self, case: Case | None, event: TicketUnclaimed, now: datetime, new_id: NewId) -> Decision:
        """The ticket goes back to the queue: the response clock runs again from where it was
        (unclaiming buys no time: a response limit already passed escalates at once)."""
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.status is not AssignmentStatus.CLAIMED:
            raise InvalidTransition(f"assignment {a.assignment_id} is {a.status}, cannot be unclaimed")
        case = case.with_assignment(replace(a, status=AssignmentStatus.OPEN, claimed_at=None))
        unclaimed = CaseUnclaimed(case_id=case.case_id, assignment_id=a.assignment_id, unit_id=a.unit_id, by=event.by)
        return Decision(case, [unclaimed])

    def note(self, case: Case | None, event: TicketNoted, now: datetime, new_id: NewId) -> Decision:
        """A note or evidence link goes into the history (and, if public, to the resident). It
        changes no state, so one written just before the case moved on is still recorded."""
        case = _known(case, event)
        a = case.assignment(event.ticket_id)
        noted = CaseNoted(
            case_id=case.case_id,
            assignment_id=a.assignment_id,
            unit_id=a.unit_id,
            visibility=event.visibility,
            text=event.text,
            url=event.url,
            by=event.by,
        )
        return Decision(case, [noted])

    def resolve(self, case: Case | None, event: TicketResolved, now: datetime, new_id: NewId) -> Decision:
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.status is not AssignmentStatus.CLAIMED:
            raise InvalidTransition(f"assignment {a.assignment_id} is {a.status}, cannot be resolved")
        case = case.with_assignment(
            replace(a, status=AssignmentStatus.RESOLVED, resolved_at=now, note=event.note, next_alert_at=None)
        )
        events: list[Event] = [
            CaseHandlerReported(
                case_id=case.case_id,
                assignment_id=a.assignment_id,
                unit_id=a.unit_id,
                role=a.role,
                note=event.note,
                by=event.by,
            )
        ]
        return self._resolved_when_done(case, events, now)

    def _resolved_when_done(self, case: Case, events: list[Event], now: datetime) -> Decision:
        """The case is resolved once its lead has resolved and no co-handler is still at work
        (the last one may resolve its part, or return it)."""
        lead = case.lead
        if lead.status is AssignmentStatus.RESOLVED and not case.active:
            case = replace(case, resolved=True, supervised=False, resolved_by=lead.unit_id, resolved_at=now)
            events.append(
                CaseResolved(
                    case_id=case.case_id, assignment_id=lead.assignment_id, unit_id=lead.unit_id, note=lead.note or ""
                )
            )
        return Decision(case, events)

    def escalate(self, case: Case | None, event: TicketEscalated, now: datetime, new_id: NewId) -> Decision:
        """上报: the assigned unit sends the case one tier up, with its reason."""
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.role is not Role.LEAD:
            raise InvalidTransition("only the lead handler can escalate a case")
        up = next_tier(a.tier)
        if up is None:
            raise InvalidTransition(f"case {case.case_id} is already at the top tier")
        unit = self.handling_unit(case, up)
        why = (EscalationReason.HANDLER, event.reason)
        case, events = self._move(case, a, (unit, up), why, now, new_id, event.by)
        return Decision(case, events)

    def reassign(self, case: Case | None, event: TicketReassigned, now: datetime, new_id: NewId) -> Decision:
        """A supervisor moves the case to another unit of its subtree (departments checked
        the subtree); the new unit's tier is its kind's."""
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.role is not Role.LEAD:
            raise InvalidTransition("only the lead assignment can be reassigned")
        unit = self.j.unit(event.to_unit_id)
        if unit is None:
            raise UnroutableCase(f"unit {event.to_unit_id!r} is not in the jurisdiction")
        why = (EscalationReason.REASSIGNED, event.reason)
        case, events = self._move(case, a, (unit, _tier_of(unit)), why, now, new_id, event.by)
        return Decision(case, events)

    def return_(self, case: Case | None, event: TicketReturned, now: datetime, new_id: NewId) -> Decision:
        """退单: the unit returns a case that is not theirs; it is dispatched again: to the unit
        the reason names, else one tier up; past the policy's limit, straight to the street."""
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        returned = CaseReturned(
            case_id=case.case_id,
            assignment_id=a.assignment_id,
            unit_id=a.unit_id,
            reason_code=event.reason_code,
            reason=event.reason,
            by=event.by,
        )
        if a.role is Role.CO:
            case, unassigned = self._end(case, a, "returned", now)
            return self._resolved_when_done(case, [returned, unassigned], now)
        case = replace(case, returns=case.returns + 1)
        street = self.handling_unit(case, Tier.STREET)
        suggested = self.j.unit(event.suggested_unit_id) if event.suggested_unit_id else None
        if case.returns > self.policy.max_returns:
            unit, tier = street, Tier.STREET
        elif suggested is not None and suggested.id != a.unit_id:
            unit, tier = suggested, _tier_of(suggested)
        else:
            up = next_tier(a.tier)
            if up is None:  # a department returned it: the street office coordinates
                unit, tier = street, Tier.STREET
            else:
                unit, tier = self.handling_unit(case, up), up
        why = (EscalationReason.RETURNED, f"{event.reason_code.value}: {event.reason}")
        case, events = self._move(case, a, (unit, tier), why, now, new_id, event.by)
        return Decision(case, [returned, *events])

    def whistle(self, case: Case | None, event: TicketWhistled, now: datetime, new_id: NewId) -> Decision:
        """吹哨: the street office summons departments; one leads, the others co-handle."""
        case = _known(case, event)
        a = self._active(case, event.ticket_id)
        if a.tier is not Tier.STREET or a.role is not Role.LEAD:
            raise InvalidTransition("only the street office leading a case can blow the whistle")
        summoned = [event.lead_unit_id, *event.co_unit_ids]
        if len(set(summoned)) != len(summoned):
            raise InvalidTransition("each department can be summoned once")
        units = []
        for unit_id in summoned:
            unit = self.j.unit(unit_id)
            if unit is None or unit.kind is not UnitKind.DEPARTMENT:
                raise InvalidTransition(f"{unit_id!r} is not a department")
            units.append(unit)
        case, unassigned = self._end(case, a, "whistled", now)
        events: list[Event] = [
            CaseWhistled(
                case_id=case.case_id,
                unit_id=a.unit_id,
                lead_unit_id=event.lead_unit_id,
                co_unit_ids=list(event.co_unit_ids),
                reason=event.reason,
                by=event.by,
            ),
            unassigned,
        ]
        arrived = f"吹哨 whistled by {a.unit_id}: {event.reason}"
        for i, unit in enumerate(units):
            role = Role.LEAD if i == 0 else Role.CO
            case, assigned = self._assign(case, unit, Tier.BUREAU, role, now, new_id, arrived)
            events.append(assigned)
        return Decision(replace(case, supervised=False), events)

    def satisfaction(
        self, case: Case | None, event: CaseSatisfactionAnswered, now: datetime, new_id: NewId
    ) -> Decision:
        """回访: satisfied closes the case; unsatisfied reopens it with the unit that resolved it."""
        case = _known(case, event)
        if case.status is not CaseStatus.RESOLVED:
            raise InvalidTransition(f"case {case.case_id} is {case.status}, not resolved")
        if event.satisfied:
            return Decision(replace(case, closed=True), [CaseClosed(case_id=case.case_id, reason="satisfied")])
        last = case.lead
        unit = self.j.unit(last.unit_id)
        if unit is None:
            raise UnroutableCase(f"unit {last.unit_id!r} is no longer in the jurisdiction")
        case = replace(case, resolved=False, resolved_at=None)
        arrived = f"reopened: the resident was not satisfied: {event.comment}".rstrip(": ")
        case, assigned = self._assign(case, unit, last.tier, Role.LEAD, now, new_id, arrived)
        reopened = CaseReopened(case_id=case.case_id, unit_id=unit.id, comment=event.comment)
        return Decision(case, [reopened, assigned])

    def cancel(self, case: Case | None, event: CaseCancelRequested, now: datetime, new_id: NewId) -> Decision:
        """The resident withdraws the case: allowed while nobody has claimed it."""
        case = _known(case, event)
        if case.closed or case.resolved or any(a.status is not AssignmentStatus.OPEN for a in case.active):
            why = "the case is already being handled" if not case.closed else "the case is closed"
            return Decision(case, [CaseCancelRefused(case_id=case.case_id, reason=why)])
        events: list[Event] = []
        for a in case.active:
            case, unassigned = self._end(case, a, "cancelled", now)
            events.append(unassigned)
        case = replace(case, closed=True, supervised=False)
        return Decision(case, [*events, CaseClosed(case_id=case.case_id, reason="cancelled")])

    # -- time ------------------------------------------------------------------------------

    def fire(self, case: Case, timer: Timer, now: datetime, new_id: NewId) -> Decision:
        """A timer fell due. If the case has moved on since it was set, nothing happens."""
        assignment_id, kind = timer.assignment_id, timer.kind
        if kind is TimerKind.SATISFACTION_WINDOW:
            if case.resolved and not case.closed:  # 回访 unanswered: the case closes as resolved
                return Decision(replace(case, closed=True), [CaseClosed(case_id=case.case_id, reason="no_answer")])
            return Decision(case)
        a = case.assignment(assignment_id)
        if not a.status.active or case.resolved or case.closed:
            return Decision(case)
        match kind:
            case TimerKind.RESPONSE_WARNING if a.status is AssignmentStatus.OPEN and not a.response_warned:
                return self._warn(case, replace(a, response_warned=True), SlaClock.RESPONSE, a.response_due)
            case TimerKind.RESOLUTION_WARNING if not a.resolution_warned:
                return self._warn(case, replace(a, resolution_warned=True), SlaClock.RESOLUTION, a.resolution_due)
            case TimerKind.RESPONSE_BREACH if a.status is AssignmentStatus.OPEN and not a.response_breached:
                return self._breach(
                    case, replace(a, response_breached=True), SlaClock.RESPONSE, a.response_due, now, new_id
                )
            case TimerKind.RESOLUTION_BREACH if not a.resolution_breached:
                return self._breach(
                    case, replace(a, resolution_breached=True), SlaClock.RESOLUTION, a.resolution_due, now, new_id
                )
            case TimerKind.SUPERVISION if a.next_alert_at is not None:
                return self._alert_again(case, a, now)
        return Decision(case)

    def _warn(self, case: Case, a: Assignment, clock: SlaClock, due: datetime) -> Decision:
        warning = CaseSlaWarning(
            case_id=case.case_id, assignment_id=a.assignment_id, unit_id=a.unit_id, tier=a.tier, clock=clock, due_at=due
        )
        return Decision(case.with_assignment(a), [warning])

    def _breach(
        self, case: Case, a: Assignment, clock: SlaClock, due: datetime, now: datetime, new_id: NewId
    ) -> Decision:
        up = next_tier(a.tier) if a.role is Role.LEAD else None
        breached = _breached(case, a, clock, due, now, supervised=up is None)
        if up is None:
            # 督办: nowhere higher to go; supervisors are alerted now and on a repeat interval.
            a = replace(a, next_alert_at=self._next_alert(now))
            return Decision(replace(case.with_assignment(a), supervised=True), [breached])
        unit = self.handling_unit(case, up)
        why = (EscalationReason.BREACH, f"its {clock.value} limit passed at {due.isoformat()}")
        case, events = self._move(case, a, (unit, up), why, now, new_id)  # ends `a`, breached as it is
        return Decision(case, [breached, *events])

    def _alert_again(self, case: Case, a: Assignment, now: datetime) -> Decision:
        clock = a.overdue(now)
        if clock is None:
            return Decision(case.with_assignment(replace(a, next_alert_at=None)))
        due = a.response_due if clock is SlaClock.RESPONSE else a.resolution_due
        a = replace(a, alerts=a.alerts + 1, next_alert_at=self._next_alert(now))
        return Decision(
            case.with_assignment(a), [_breached(case, a, clock, due, now, supervised=True, repeat=a.alerts)]
        )

    def _next_alert(self, now: datetime) -> datetime:
        return self.policy.calendar.add(now, self.policy.supervision_repeat)

    def _active(self, case: Case, assignment_id: str) -> Assignment:
        if case.resolved or case.closed:
            raise InvalidTransition(f"case {case.case_id} is {case.status}")
        a = case.assignment(assignment_id)
        if not a.status.active:
            raise InvalidTransition(f"assignment {assignment_id} of case {case.case_id} is {a.status}")
        return a


def _known(case: Case | None, event: Event) -> Case:
    """The case an event is about, which the dispatcher must have routed before."""
    if case is None:
        raise InvalidTransition(f"no case {event.case_id} in the dispatcher")
    return case


def _breached(
    case: Case, a: Assignment, clock: SlaClock, due: datetime, now: datetime, *, supervised: bool, repeat: int = 0
) -> CaseSlaBreached:
    return CaseSlaBreached(
        case_id=case.case_id,
        assignment_id=a.assignment_id,
        unit_id=a.unit_id,
        tier=a.tier,
        clock=clock,
        due_at=due,
        late_seconds=(now - due).total_seconds(),
        supervised=supervised,
        repeat=repeat,
    )


def _tier_of(unit: Unit) -> Tier:
    return {
        UnitKind.GRID: Tier.GRID,
        UnitKind.COMMUNITY: Tier.COMMUNITY,
        UnitKind.STREET: Tier.STREET,
        UnitKind.DEPARTMENT: Tier.BUREAU,
        UnitKind.POOL: Tier.GRID,
        UnitKind.PROPERTY: Tier.GRID,
    }[unit.kind]
