"""Who hears what (notifier/domain.py) and when quiet hours hold residents' messages: pure."""

from datetime import time, timedelta

import pytest

from notifier.domain import CaseFacts, Names, To, arrival, notices
from notifier.messages import Audience, Kind
from services.district.events import (
    CaseAssigned,
    CaseClosed,
    CaseNoted,
    CaseResolved,
    CaseSlaBreached,
    EscalationReason,
    NoteVisibility,
    Priority,
    Role,
    SlaClock,
    Tier,
)
from services.district.jurisdiction import load_jurisdiction
from services.district.policy import QuietHours, load_policy
from services.runtime.settings import DATA_DIR
from tests.support.clock import LOCAL, START, local_midnight

JURISDICTION = load_jurisdiction(DATA_DIR / "district.yaml")
POLICY = load_policy(DATA_DIR / "policy.yaml", JURISDICTION)
NAMES = Names(JURISDICTION, POLICY)
CASE = CaseFacts("c1", "garbage", "G11", Priority.NORMAL, "U-G11")


def assigned(role: Role = Role.LEAD, priority: Priority = Priority.NORMAL, reason: str = "") -> CaseAssigned:
    return CaseAssigned(
        case_id="c1",
        assignment_id="a1",
        unit_id="U-G11" if role is Role.LEAD else "D-URBAN",
        unit_name="Grid G11 workstation",
        tier=Tier.GRID,
        role=role,
        priority=priority,
        category="garbage",
        description="rubbish",
        grid_id="G11",
        response_due=START + timedelta(hours=2),
        resolution_due=START + timedelta(days=1),
        reason=reason,
    )


def told(event, case: CaseFacts = CASE) -> list[tuple[str, Kind, bool, bool]]:
    return [(n.to, n.facts.kind, n.urgent, n.digest) for n in notices(event, case, NAMES, POLICY, START)]


def test_an_assignment_tells_the_residents_where_and_the_unit_its_new_ticket():
    [resident, unit] = notices(assigned(), CASE, NAMES, POLICY, START)
    assert (resident.to, resident.facts.kind, resident.facts.audience) == (
        To.RESIDENTS,
        Kind.ASSIGNED,
        Audience.RESIDENT,
    )
    assert resident.facts.unit is not None and resident.facts.unit.zh == "枫林社区第一网格工作站"
    assert (resident.facts.due, resident.facts.resolution_due) == (
        START + timedelta(hours=2),
        START + timedelta(days=1),
    )
    assert (unit.to, unit.facts.kind, unit.digest, unit.urgent) == ("unit:U-G11", Kind.TICKET_NEW, True, False)


def test_an_emergency_ticket_goes_at_once_never_in_a_digest():
    [(_, _, resident_urgent, _), (_, kind, urgent, digest)] = told(
        assigned(priority=Priority.EMERGENCY), CaseFacts("c1", "garbage", "G11", Priority.EMERGENCY)
    )
    assert (kind, urgent, digest, resident_urgent) == (Kind.TICKET_NEW, True, False, True)


def test_a_whistle_summons_the_co_handler_naming_the_lead():
    [summons] = notices(assigned(Role.CO, reason="吹哨 whistled by U-S1: joint"), CASE, NAMES, POLICY, START)
    assert (summons.to, summons.facts.kind, summons.urgent) == ("unit:D-URBAN", Kind.SUMMONED, True)
    assert summons.facts.other_unit is not None and summons.facts.other_unit.en == "Grid G11 workstation"
    assert summons.facts.reason == "whistled"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("escalated from U-G11 (grid tier): late", EscalationReason.BREACH),
        ("上报 escalated by U-G11 (grid tier): help", EscalationReason.HANDLER),
        ("退单 returned by U-C1 (community tier): not ours", EscalationReason.RETURNED),
        ("reassigned from U-S1 by a supervisor: x", EscalationReason.REASSIGNED),
        ("reopened: the resident was not satisfied", "reopened"),
        ("", ""),
    ],
)
def test_why_a_ticket_arrived_becomes_a_code_the_messages_say_in_words(reason, code):
    assert arrival(reason) == code


def test_only_public_notes_reach_residents():
    note = {"case_id": "c1", "assignment_id": "a1", "unit_id": "U-G11", "text": "cleared"}
    assert told(CaseNoted(**note, visibility=NoteVisibility.INTERNAL)) == []
    assert told(CaseNoted(**note, visibility=NoteVisibility.PUBLIC)) == [(To.RESIDENTS, Kind.NOTED, False, False)]
    assert told(CaseNoted(**note, visibility=NoteVisibility.PUBLIC, url="https://x.cn/p.jpg")) == []


def test_a_resolution_tells_the_result_and_opens_the_satisfaction_visit():
    [result, visit] = notices(
        CaseResolved(case_id="c1", assignment_id="a1", unit_id="U-G11", note="cleared"), CASE, NAMES, POLICY, START
    )
    assert (result.facts.kind, result.facts.note) == (Kind.RESOLVED, "cleared")
    assert (visit.facts.kind, visit.facts.due) == (Kind.VISIT, START + timedelta(days=3))


def test_a_cancelled_case_says_so_and_a_closed_one_says_closed():
    assert told(CaseClosed(case_id="c1", reason="cancelled")) == [(To.RESIDENTS, Kind.CANCELLED, False, False)]
    assert told(CaseClosed(case_id="c1", reason="satisfied")) == [(To.RESIDENTS, Kind.CLOSED, False, False)]


def test_a_breach_tells_the_unit_once_and_ops_each_supervision_alert():
    breach = {
        "case_id": "c1",
        "assignment_id": "a1",
        "unit_id": "U-G11",
        "tier": Tier.GRID,
        "clock": SlaClock.RESPONSE,
        "due_at": START,
        "late_seconds": 600,
    }
    assert told(CaseSlaBreached(**breach)) == [("unit:U-G11", Kind.SLA_BREACHED, True, False)]
    assert told(CaseSlaBreached(**breach, supervised=True)) == [
        ("unit:U-G11", Kind.SLA_BREACHED, True, False),
        (To.OPS, Kind.SUPERVISION, True, False),
    ]
    [alert] = notices(CaseSlaBreached(**breach, supervised=True, repeat=2), CASE, NAMES, POLICY, START)
    assert (alert.to, alert.facts.repeat, alert.facts.late_minutes) == (To.OPS, 2, 10)


QUIET = QuietHours(start=time(22, 0), end=time(7, 0))


@pytest.mark.parametrize(
    ("at", "until"),
    [
        (timedelta(hours=21, minutes=59), None),  # before they start
        (timedelta(hours=22), timedelta(days=1, hours=7)),  # from 22:00 ...
        (timedelta(hours=23, minutes=30), timedelta(days=1, hours=7)),  # ... across midnight ...
        (timedelta(days=1, hours=0, minutes=5), timedelta(days=1, hours=7)),  # ... to the morning
        (timedelta(days=1, hours=6, minutes=59), timedelta(days=1, hours=7)),
        (timedelta(days=1, hours=7), None),  # over at 07:00
    ],
)
def test_quiet_hours_span_midnight_in_the_policys_time_zone(at, until):
    midnight = local_midnight()
    held = QUIET.until(midnight + at, LOCAL)
    assert held == (None if until is None else midnight + until)


def test_quiet_hours_within_one_day_and_refused_when_empty():
    afternoon = QuietHours(start=time(12, 0), end=time(14, 0))
    noon = local_midnight().replace(hour=13)
    assert afternoon.until(noon, LOCAL) == noon.replace(hour=14)
    assert afternoon.until(noon.replace(hour=15), LOCAL) is None
    with pytest.raises(ValueError, match="same time"):
        QuietHours(start=time(7, 0), end=time(7, 0))
