"""The routing core, pure: tiers, clocks, escalation, return, whistle, reopen, supervision."""

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain import (
    AssignmentStatus,
    Case,
    CaseStatus,
    InvalidTransition,
    Router,
    Timer,
    TimerKind,
    UnroutableCase,
)
from services.district.events import (
    Actor,
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClosed,
    CaseEscalated,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseSatisfactionAnswered,
    CaseSlaBreached,
    CaseSlaWarning,
    CaseUnassigned,
    CaseUnclaimed,
    EscalationReason,
    Location,
    NoteVisibility,
    Priority,
    ReturnReason,
    Role,
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
from services.district.jurisdiction import Jurisdiction, PoolLevel, load_jurisdiction
from services.district.policy import Policy, load_policy
from services.runtime.settings import DATA_DIR

J = load_jurisdiction(DATA_DIR / "district.yaml")
POLICY = load_policy(DATA_DIR / "policy.yaml", J)
QINGHE_VOLUNTEERS = {"name": "Qinghe volunteers", "name_zh": "青河街道志愿者队伍"}
ROUTER = Router(J, POLICY)
# Monday 2 Nov 2026, 10:00 in Shanghai
MONDAY_10AM = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def ids():
    counter = itertools.count(1)
    return lambda: f"a{next(counter)}"


def reported(category: str = "garbage", grid_id: str = "G23", **extra) -> CaseReported:
    c = J.grid(grid_id).shape.centroid
    return CaseReported(
        case_id="c1",
        category=category,
        description="something is wrong",
        location=Location(lat=c.y, lon=c.x),
        grid_id=grid_id,
        **extra,
    )


def new_case(category="garbage", new_id=None, **extra) -> tuple[Case, list]:
    d = ROUTER.report(None, reported(category, **extra), MONDAY_10AM, new_id or ids())
    return d.case, d.events


def claimed(case: Case, ticket: str | None = None, at=MONDAY_10AM) -> Case:
    ticket = ticket or case.lead.assignment_id
    return ROUTER.claim(case, TicketClaimed(case_id="c1", ticket_id=ticket, unit_id="u"), at, ids()).case


def resolved(case: Case, ticket: str | None = None, note="done") -> tuple[Case, list]:
    ticket = ticket or case.lead.assignment_id
    event = TicketResolved(case_id="c1", ticket_id=ticket, unit_id="u", note=note)
    d = ROUTER.resolve(case, event, MONDAY_10AM, ids())
    return d.case, d.events


def fire_all_due(case: Case, now: datetime, new_id) -> tuple[Case, list]:
    """Fire every due timer in due order, as the timer worker does."""
    events: list = []
    while due := sorted((t for t in ROUTER.timers(case) if t.due_at <= now), key=lambda t: t.due_at):
        d = ROUTER.fire(case, due[0], now, new_id)
        case, events = d.case, events + d.events
    return case, events


@pytest.mark.parametrize(
    ("category", "tier", "unit"),
    [
        ("garbage", Tier.GRID, "U-G23"),  # G23 is in community C2 of street S1
        ("streetlight", Tier.COMMUNITY, "U-C2"),
        ("road_damage", Tier.STREET, "U-S1"),
        ("bus_stop", Tier.BUREAU, "D-BUS"),
    ],
)
def test_a_case_starts_at_its_categorys_tier_with_that_tiers_unit(category, tier, unit):
    case, [assigned] = new_case(category)
    assert (case.status, case.lead.tier, case.lead.unit_id) == (CaseStatus.ASSIGNED, tier, unit)
    assert isinstance(assigned, CaseAssigned) and (assigned.unit_id, assigned.tier) == (unit, tier)


def test_an_assignment_starts_both_clocks_from_the_policy():
    case, [assigned] = new_case("garbage")
    # normal grid: response 4 working hours, resolution 2 working days, warnings at 80%
    assert assigned.response_due == MONDAY_10AM + timedelta(hours=4)
    assert assigned.resolution_due == datetime(2026, 11, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00
    assert {(t.kind, t.due_at) for t in ROUTER.timers(case)} == {
        (TimerKind.RESPONSE_WARNING, MONDAY_10AM + timedelta(hours=3, minutes=12)),
        (TimerKind.RESPONSE_BREACH, MONDAY_10AM + timedelta(hours=4)),
        (TimerKind.RESOLUTION_WARNING, datetime(2026, 11, 3, 7, 6, tzinfo=UTC)),  # 13.6 h: Mon 7.5 h + Tue 6.1 h
        (TimerKind.RESOLUTION_BREACH, datetime(2026, 11, 4, 2, 0, tzinfo=UTC)),
    }


def test_emergencies_start_at_the_emergency_tier_with_short_limits():
    case, [assigned] = new_case("garbage", priority=Priority.EMERGENCY)
    assert (assigned.tier, assigned.unit_id) == (Tier.COMMUNITY, "U-C2")
    assert assigned.response_due == MONDAY_10AM + timedelta(minutes=10)


def test_a_flagged_household_gets_the_higher_priority():
    case, [assigned] = new_case("garbage", household_flag="red")
    assert case.priority is Priority.URGENT
    assert assigned.response_due == MONDAY_10AM + timedelta(hours=1)


def test_a_one_key_call_is_an_emergency_whatever_priority_it_carries():
    case, [assigned] = new_case("one_key_help", channel="one_key")
    assert case.priority is Priority.EMERGENCY
    assert (assigned.tier, assigned.response_due) == (Tier.GRID, MONDAY_10AM + timedelta(minutes=10))


def test_an_unknown_category_is_unroutable():
    with pytest.raises(UnroutableCase):
        ROUTER.report(None, reported().model_copy(update={"category": "ufo"}), MONDAY_10AM, ids())


def test_claim_then_resolve():
    case, _ = new_case()
    case = claimed(case)
    assert case.status is CaseStatus.CLAIMED
    assert {t.kind for t in ROUTER.timers(case)} == {TimerKind.RESOLUTION_WARNING, TimerKind.RESOLUTION_BREACH}
    case, events = resolved(case, note="cleared")
    assert case.status is CaseStatus.RESOLVED and case.resolved_by == "U-G23"
    assert isinstance(events[-1], CaseResolved) and events[-1].note == "cleared"
    # only the satisfaction window is left: 3 days after resolution
    [window] = ROUTER.timers(case)
    assert (window.kind, window.due_at) == (TimerKind.SATISFACTION_WINDOW, MONDAY_10AM + timedelta(days=3))


def test_missed_response_limits_escalate_grid_to_community_to_street_with_fresh_clocks():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    now = MONDAY_10AM + timedelta(hours=4, seconds=1)
    case, events = fire_all_due(case, now, new_id)
    assert [type(e) for e in events] == [CaseSlaWarning, CaseSlaBreached, CaseEscalated, CaseUnassigned, CaseAssigned]
    assert (case.lead.tier, case.lead.unit_id, case.lead.assigned_at) == (Tier.COMMUNITY, "U-C2", now)
    assert events[1].late_seconds == 1.0 and not events[1].supervised
    assert events[2].reason is EscalationReason.BREACH

    now = case.lead.response_due + timedelta(seconds=1)  # Tuesday 10:30: the evening and night do not count
    case, events = fire_all_due(case, now, new_id)
    assert (case.lead.tier, case.lead.unit_id) == (Tier.STREET, "U-S1")
    assert [a.status for a in case.assignments] == [
        AssignmentStatus.ENDED,
        AssignmentStatus.ENDED,
        AssignmentStatus.OPEN,
    ]


def test_a_breach_at_the_top_tier_puts_the_case_under_supervision_and_alerts_again():
    new_id = ids()
    case, _ = new_case("bus_stop", new_id=new_id)
    due = case.lead.response_due
    case, events = fire_all_due(case, due, new_id)
    breach = events[-1]
    assert isinstance(breach, CaseSlaBreached) and breach.supervised and breach.repeat == 0
    assert case.supervised and case.lead.tier is Tier.BUREAU  # nowhere higher to go

    case, events = fire_all_due(case, due + timedelta(hours=4), new_id)
    assert [(type(e), e.repeat) for e in events] == [(CaseSlaBreached, 1)]
    case, events = fire_all_due(case, due + timedelta(hours=8), new_id)
    assert [e.repeat for e in events] == [2]

    case = claimed(case, at=due + timedelta(hours=9))  # claiming satisfies the response clock
    assert not case.supervised
    assert TimerKind.SUPERVISION not in {t.kind for t in ROUTER.timers(case)}


def test_each_breach_escalates_once_however_often_its_timer_fires():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    first = case.lead.assignment_id
    late = case.lead.response_due + timedelta(minutes=1)
    breach = Timer(first, TimerKind.RESPONSE_BREACH, case.lead.response_due)
    d = ROUTER.fire(case, breach, late, new_id)
    again = ROUTER.fire(d.case, breach, late, new_id)
    assert again.events == [] and again.case == d.case


def test_a_handler_escalates_one_tier_up_with_a_reason():
    case, _ = new_case()
    d = ROUTER.escalate(
        case,
        TicketEscalated(case_id="c1", ticket_id=case.lead.assignment_id, unit_id="U-G23", reason="needs a crane"),
        MONDAY_10AM,
        ids(),
    )
    escalated = d.events[0]
    assert isinstance(escalated, CaseEscalated) and escalated.reason is EscalationReason.HANDLER
    assert (d.case.lead.tier, d.case.lead.unit_id) == (Tier.COMMUNITY, "U-C2")


def test_the_bureau_cannot_escalate_further():
    case, _ = new_case("bus_stop")
    with pytest.raises(InvalidTransition, match="top tier"):
        ROUTER.escalate(
            case,
            TicketEscalated(case_id="c1", ticket_id=case.lead.assignment_id, unit_id="D-BUS", reason="r"),
            MONDAY_10AM,
            ids(),
        )


def returned(case: Case, suggested: str | None = None, new_id=None) -> Case:
    event = TicketReturned(
        case_id="c1",
        ticket_id=case.lead.assignment_id,
        unit_id=case.lead.unit_id,
        reason_code=ReturnReason.NOT_OUR_JURISDICTION,
        reason="not ours",
        suggested_unit_id=suggested,
    )
    return ROUTER.return_(case, event, MONDAY_10AM, new_id or ids()).case


def test_a_returned_case_goes_to_the_unit_the_reason_names_else_one_tier_up():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    case = returned(case, suggested="U-G22", new_id=new_id)
    assert (case.lead.tier, case.lead.unit_id, case.returns) == (Tier.GRID, "U-G22", 1)
    case = returned(case, new_id=new_id)
    assert (case.lead.tier, case.lead.unit_id, case.returns) == (Tier.COMMUNITY, "U-C2", 2)


def test_a_case_returned_more_than_the_policy_allows_goes_straight_to_the_street():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    for unit in ("U-G22", "U-G23"):
        case = returned(case, suggested=unit, new_id=new_id)
    case = returned(case, suggested="U-G22", new_id=new_id)  # the third: past max_returns = 2
    assert (case.lead.tier, case.lead.unit_id) == (Tier.STREET, "U-S1")


def whistled(case: Case, new_id) -> Case:
    event = TicketWhistled(
        case_id="c1",
        ticket_id=case.lead.assignment_id,
        unit_id="U-S1",
        lead_unit_id="D-URBAN",
        co_unit_ids=["D-HOUSING", "D-POWER"],
        reason="three departments' matter",
    )
    return ROUTER.whistle(case, event, MONDAY_10AM, new_id).case


def test_a_whistle_summons_a_lead_and_co_handlers_each_with_clocks():
    new_id = ids()
    case, _ = new_case("road_damage", new_id=new_id)
    case = whistled(case, new_id)
    active = [(a.unit_id, a.role, a.tier) for a in case.active]
    assert active == [
        ("D-URBAN", Role.LEAD, Tier.BUREAU),
        ("D-HOUSING", Role.CO, Tier.BUREAU),
        ("D-POWER", Role.CO, Tier.BUREAU),
    ]
    assert {t.assignment_id for t in ROUTER.timers(case)} == {a.assignment_id for a in case.active}


def test_a_whistled_case_resolves_only_when_the_lead_and_every_co_handler_reported():
    new_id = ids()
    case, _ = new_case("road_damage", new_id=new_id)
    case = whistled(case, new_id)
    lead, housing, power = case.active
    for a in case.active:
        case = claimed(case, a.assignment_id)
    case, events = resolved(case, lead.assignment_id, note="road fixed")
    assert case.status is CaseStatus.CLAIMED and not any(isinstance(e, CaseResolved) for e in events)
    case, events = resolved(case, housing.assignment_id)
    assert case.status is CaseStatus.CLAIMED
    case, events = resolved(case, power.assignment_id)
    assert case.status is CaseStatus.RESOLVED
    assert isinstance(events[-1], CaseResolved) and events[-1].note == "road fixed"


def test_a_co_handler_returning_its_part_after_the_lead_resolved_resolves_the_case():
    """The last co-handler may give its part back (退单) instead of resolving it: the case is
    then resolved with the lead's result, not left with nobody at work and no timers."""
    new_id = ids()
    case, _ = new_case("road_damage", new_id=new_id)
    case = whistled(case, new_id)
    lead, housing, power = case.active
    for a in case.active:
        case = claimed(case, a.assignment_id)
    case, _ = resolved(case, lead.assignment_id, note="road fixed")
    case, _ = resolved(case, housing.assignment_id)
    back = TicketReturned(
        case_id="c1", ticket_id=power.assignment_id, unit_id=power.unit_id,
        reason_code=ReturnReason.NOT_OUR_RESPONSIBILITY, reason="no cables here",
    )  # fmt: skip
    d = ROUTER.return_(case, back, MONDAY_10AM, new_id)
    assert d.case.status is CaseStatus.RESOLVED and isinstance(d.events[-1], CaseResolved)
    assert d.events[-1].note == "road fixed" and ROUTER.timers(d.case)[0].kind is TimerKind.SATISFACTION_WINDOW


def test_only_the_street_office_can_whistle():
    case, _ = new_case("garbage")
    with pytest.raises(InvalidTransition, match="street office"):
        whistled(case, ids())


def test_unsatisfied_reopens_with_the_unit_that_resolved_and_satisfied_closes():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    case, _ = resolved(claimed(case))
    d = ROUTER.satisfaction(
        case, CaseSatisfactionAnswered(case_id="c1", satisfied=False, comment="still there"), MONDAY_10AM, new_id
    )
    assert isinstance(d.events[0], CaseReopened)
    assert (d.case.status, d.case.lead.unit_id, d.case.lead.tier) == (CaseStatus.ASSIGNED, "U-G23", Tier.GRID)
    case, _ = resolved(claimed(d.case))
    d = ROUTER.satisfaction(case, CaseSatisfactionAnswered(case_id="c1", satisfied=True), MONDAY_10AM, new_id)
    assert d.case.status is CaseStatus.CLOSED and isinstance(d.events[0], CaseClosed)


def test_events_about_an_ended_assignment_are_refused():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    old = case.lead.assignment_id
    case, _ = fire_all_due(case, case.lead.response_due, new_id)
    with pytest.raises(InvalidTransition):
        claimed(case, old)


# -- the state machine under any sequence of events --------------------------------------

ACTIONS = ["claim", "resolve", "escalate", "return", "whistle", "time", "satisfied", "unsatisfied", "stale", "cancel"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["garbage", "streetlight", "road_damage", "bus_stop", "elevator"]),
    st.sampled_from([Priority.NORMAL, Priority.URGENT, Priority.EMERGENCY]),
    st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 3), st.integers(1, 60 * 60 * 30)), max_size=25),
)
def test_any_sequence_of_events_leaves_one_valid_state_with_at_most_one_open_lead(category, priority, steps):
    new_id = ids()
    now = MONDAY_10AM
    case, _ = new_case(category, new_id=new_id, priority=priority)
    for action, pick, seconds in steps:
        active = case.active
        a = active[pick % len(active)] if active else case.lead
        before = case
        try:
            match action:
                case "claim":
                    claim = TicketClaimed(case_id="c1", ticket_id=a.assignment_id, unit_id="u")
                    d = ROUTER.claim(case, claim, now, new_id)
                case "resolve":
                    d = ROUTER.resolve(
                        case,
                        TicketResolved(case_id="c1", ticket_id=a.assignment_id, unit_id="u", note="n"),
                        now,
                        new_id,
                    )
                case "escalate":
                    d = ROUTER.escalate(
                        case,
                        TicketEscalated(case_id="c1", ticket_id=a.assignment_id, unit_id="u", reason="r"),
                        now,
                        new_id,
                    )
                case "return":
                    d = ROUTER.return_(
                        case,
                        TicketReturned(
                            case_id="c1",
                            ticket_id=a.assignment_id,
                            unit_id="u",
                            reason_code=ReturnReason.OTHER,
                            reason="r",
                        ),
                        now,
                        new_id,
                    )
                case "whistle":
                    d = ROUTER.whistle(
                        case,
                        TicketWhistled(
                            case_id="c1",
                            ticket_id=a.assignment_id,
                            unit_id="u",
                            lead_unit_id="D-URBAN",
                            co_unit_ids=["D-WATER"],
                            reason="r",
                        ),
                        now,
                        new_id,
                    )
                case "time":
                    now += timedelta(seconds=seconds)
                    case, _ = fire_all_due(case, now, new_id)
                    d = None
                case "satisfied" | "unsatisfied":
                    d = ROUTER.satisfaction(
                        case, CaseSatisfactionAnswered(case_id="c1", satisfied=action == "satisfied"), now, new_id
                    )
                case "cancel":
                    d = ROUTER.cancel(case, CaseCancelRequested(case_id="c1"), now, new_id)
                case "stale":
                    stale = TicketClaimed(case_id="c1", ticket_id="no-such-ticket", unit_id="u")
                    d = ROUTER.claim(case, stale, now, new_id)
        except InvalidTransition:
            assert case == before  # a refused event changes nothing
            continue
        if d is not None:
            case = d.case

        assert case.status in set(CaseStatus)
        open_leads = [x for x in case.active if x.role is Role.LEAD]
        assert len(open_leads) <= 1
        if case.status in (CaseStatus.ASSIGNED, CaseStatus.CLAIMED):
            assert open_leads or case.lead.status is AssignmentStatus.RESOLVED  # waiting for co-handlers
        else:
            assert {t.kind for t in ROUTER.timers(case)} <= {TimerKind.SATISFACTION_WINDOW}
        # nothing is left due: the worker would have fired it
        assert all(t.due_at > now for t in ROUTER.timers(case)) or action != "time"


def test_no_answer_within_the_satisfaction_window_closes_the_case():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    case, _ = resolved(claimed(case))
    case, events = fire_all_due(case, MONDAY_10AM + timedelta(days=3), new_id)
    assert case.status is CaseStatus.CLOSED
    assert [(type(e), e.reason) for e in events] == [(CaseClosed, "no_answer")]
    assert ROUTER.timers(case) == []


def test_a_case_nobody_claimed_can_be_cancelled_and_a_claimed_one_cannot():
    case, _ = new_case()
    d = ROUTER.cancel(case, CaseCancelRequested(case_id="c1", reason="fixed it myself"), MONDAY_10AM, ids())
    assert d.case.status is CaseStatus.CLOSED and not d.case.active
    assert [type(e) for e in d.events] == [CaseUnassigned, CaseClosed]
    assert ROUTER.timers(d.case) == []

    d = ROUTER.cancel(claimed(new_case()[0]), CaseCancelRequested(case_id="c1"), MONDAY_10AM, ids())
    assert d.case.status is CaseStatus.CLAIMED
    assert [type(e) for e in d.events] == [CaseCancelRefused]


# -- volunteer pools and property companies at the grid tier ---------------------------------

IN_OSMANTHUS = Location(lat=30.5025, lon=114.3125)  # compound CP-OSMANTHUS (PM-GREEN), grid G21, community C2


def reported_at(category: str, where: Location) -> CaseReported:
    grid = J.locate(where.lat, where.lon)
    return CaseReported(case_id="c1", category=category, description="d", location=where, grid_id=grid.id)


def test_a_property_category_inside_a_compound_goes_to_its_property_company_at_the_grid_tier():
    d = ROUTER.report(None, reported_at("lift_fault", IN_OSMANTHUS), MONDAY_10AM, ids())
    assert (d.case.lead.tier, d.case.lead.unit_id, d.case.location) == (Tier.GRID, "PM-GREEN", IN_OSMANTHUS)
    assert (d.events[0].unit_id, d.events[0].unit_name) == ("PM-GREEN", "Greentown Property Management")


def test_a_property_category_outside_every_compound_goes_to_the_grid_worker():
    case, [assigned] = new_case("corridor_garbage", grid_id="G21")  # G21's centre is outside the compound
    assert (assigned.tier, assigned.unit_id) == (Tier.GRID, "U-G21")


def test_a_case_stored_without_a_location_routes_by_its_grid():
    case, _ = new_case("lift_fault", grid_id="G21")
    assert ROUTER.handling_unit(replace(case, location=None), Tier.GRID).id == "U-G21"


def test_a_property_companys_ticket_escalates_to_the_community_office():
    case = ROUTER.report(None, reported_at("common_water_leak", IN_OSMANTHUS), MONDAY_10AM, ids()).case
    d = ROUTER.escalate(
        case,
        TicketEscalated(case_id="c1", ticket_id=case.lead.assignment_id, unit_id="PM-GREEN", reason="roof"),
        MONDAY_10AM,
        ids(),
    )
    escalated = d.events[0]
    assert (escalated.from_tier, escalated.from_unit_id) == (Tier.GRID, "PM-GREEN")
    assert (d.case.lead.tier, d.case.lead.unit_id) == (Tier.COMMUNITY, "U-C2")


@pytest.mark.parametrize("category", ["micro_wish", "order"])
def test_a_pool_category_goes_to_the_pool_of_the_cases_community(category):
    case, [assigned] = new_case(category, details={"attributes": {"need": "shopping"}})
    assert (assigned.tier, assigned.unit_id) == (Tier.GRID, "P-C2")  # G23 is in community C2


def test_a_missed_limit_on_a_pool_ticket_escalates_to_the_community_office():
    new_id = ids()
    case, _ = new_case("micro_wish", new_id=new_id)
    case, events = fire_all_due(case, case.lead.response_due + timedelta(seconds=1), new_id)
    breach = next(e for e in events if isinstance(e, CaseSlaBreached))
    assert (breach.unit_id, breach.tier) == ("P-C2", Tier.GRID)
    assert (case.lead.tier, case.lead.unit_id) == (Tier.COMMUNITY, "U-C2")


def test_with_no_pool_to_take_it_a_pool_category_goes_to_the_grid_worker():
    bare = Jurisdiction.model_validate({**J.model_dump(), "pools": []})
    d = Router(bare, POLICY).report(None, reported("micro_wish"), MONDAY_10AM, ids())
    assert (d.case.lead.tier, d.case.lead.unit_id) == (Tier.GRID, "U-G23")


def test_a_street_level_pool_category_goes_to_the_streets_pool():
    district = J.model_dump()
    district["units"].append({"id": "P-S1", **QINGHE_VOLUNTEERS, "kind": "pool"})
    district["pools"].append({"id": "P-S1", **QINGHE_VOLUNTEERS, "street_id": "S1"})
    j = Jurisdiction.model_validate(district)
    policy = POLICY.model_dump()
    next(c for c in policy["categories"] if c["code"] == "order")["pool"] = PoolLevel.STREET
    d = Router(j, Policy.model_validate(policy)).report(None, reported("order"), MONDAY_10AM, ids())
    assert (d.case.lead.tier, d.case.lead.unit_id) == (Tier.GRID, "P-S1")


def test_a_case_returned_to_a_pool_or_property_company_is_at_the_grid_tier():
    new_id = ids()
    case, _ = new_case("streetlight", new_id=new_id)  # at the community office
    case = returned(case, suggested="P-C2", new_id=new_id)
    assert (case.lead.tier, case.lead.unit_id) == (Tier.GRID, "P-C2")
    case = returned(case, suggested="PM-GREEN", new_id=new_id)
    assert (case.lead.tier, case.lead.unit_id) == (Tier.GRID, "PM-GREEN")


# --- staff actions by a person --------------------------------------------------------------

LI = Actor(staff_id="st-1", name="Li Wei")


def test_unclaiming_buys_no_time_a_response_limit_already_passed_escalates_at_once():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    case = claimed(case)
    assert not [t for t in ROUTER.timers(case) if t.kind is TimerKind.RESPONSE_BREACH]
    late = MONDAY_10AM + timedelta(hours=5)
    unclaim = TicketUnclaimed(case_id="c1", ticket_id=case.lead.assignment_id, unit_id="U-G23", by=LI)
    d = ROUTER.unclaim(case, unclaim, late, new_id)
    assert [type(e) for e in d.events] == [CaseUnclaimed] and d.events[0].by == LI
    assert (d.case.lead.status, d.case.status) == (AssignmentStatus.OPEN, CaseStatus.ASSIGNED)
    case, events = fire_all_due(d.case, late, new_id)
    assert [type(e) for e in events][:3] == [CaseSlaWarning, CaseSlaBreached, CaseEscalated]
    assert case.lead.unit_id == "U-C2"
    with pytest.raises(InvalidTransition):
        ROUTER.unclaim(new_case()[0], unclaim, late, new_id)  # an open ticket has nobody to unclaim it


def test_the_person_who_acted_is_on_the_case_events_and_the_new_unit_learns_why():
    new_id = ids()
    case, _ = new_case(new_id=new_id)
    ticket = case.lead.assignment_id
    d = ROUTER.claim(case, TicketClaimed(case_id="c1", ticket_id=ticket, unit_id="U-G23", by=LI), MONDAY_10AM, new_id)
    assert d.events[0].by == LI
    note = TicketNoted(
        case_id="c1", ticket_id=ticket, unit_id="U-G23", visibility=NoteVisibility.PUBLIC, text="on my way", by=LI
    )
    noted = ROUTER.note(d.case, note, MONDAY_10AM, new_id)
    assert noted.case == d.case and noted.events[0].text == "on my way" and noted.events[0].by == LI
    up = TicketEscalated(case_id="c1", ticket_id=ticket, unit_id="U-G23", reason="needs a skip lorry", by=LI)
    d = ROUTER.escalate(d.case, up, MONDAY_10AM, new_id)
    escalated, _, assigned = d.events
    assert escalated.by == LI
    assert assigned.unit_id == "U-C2" and "上报" in assigned.reason and "needs a skip lorry" in assigned.reason
    # a supervisor moves it to another unit; its tier is that unit's
    move = TicketReassigned(
        case_id="c1", ticket_id=d.case.lead.assignment_id, unit_id="U-C2", to_unit_id="U-G21", reason="x", by=LI
    )
    d = ROUTER.reassign(d.case, move, MONDAY_10AM, new_id)
    assert (d.case.lead.unit_id, d.case.lead.tier) == ("U-G21", Tier.GRID)
    assert d.events[0].reason is EscalationReason.REASSIGNED and "reassigned" in d.events[-1].reason
