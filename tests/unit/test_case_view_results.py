"""What lifecycle events keep in the resident's case view for the public feed (intake/domain.py)."""

from intake.domain import view_change
from services.district.events import CaseClosed, CaseReopened, CaseResolved


def test_a_resolution_keeps_its_unit_and_note_and_is_stamped_with_the_events_time():
    change = view_change(CaseResolved(case_id="c", assignment_id="a", unit_id="U-G11", note="done"))
    assert change is not None and change.stamped == ("resolved_at",)
    assert change.columns == {"resolved_unit_id": "U-G11", "result_note": "done", "satisfaction": None}


def test_closing_tells_the_visits_outcome_and_a_cancellation_tells_none():
    outcomes = {}
    for reason in ("satisfied", "no_answer", "cancelled"):
        change = view_change(CaseClosed(case_id="c", reason=reason))
        assert change is not None and change.stamped == ("closed_at",)
        outcomes[reason] = change.columns.get("satisfaction")
    assert outcomes == {"satisfied": "satisfied", "no_answer": "no_answer", "cancelled": None}


def test_reopening_clears_the_resolution():
    change = view_change(CaseReopened(case_id="c", unit_id="U-G11", comment="still there"))
    assert change is not None
    assert {
        k: change.columns[k] for k in ("resolved_at", "resolved_unit_id", "result_note", "satisfaction")
    } == dict.fromkeys(("resolved_at", "resolved_unit_id", "result_note", "satisfaction"))
