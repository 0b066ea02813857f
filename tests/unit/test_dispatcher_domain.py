import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher import domain
from dispatcher.domain import CaseStatus, InvalidTransition, UnroutableCase
from services.events import (
    CaseAssigned,
    CaseClaimed,
    CaseReported,
    CaseResolved,
    Location,
    TicketClaimed,
    TicketResolved,
    Tier,
)
from services.jurisdiction import load_jurisdiction
from services.settings import DATA_DIR

J = load_jurisdiction(DATA_DIR / "district.yaml")


def reported(category: str, grid_id: str = "G23") -> CaseReported:
    grid = J.grid(grid_id)
    c = grid.shape.centroid
    return CaseReported(
        case_id="c1",
        category=category,
        description="something is wrong",
        location=Location(lat=c.y, lon=c.x),
        grid_id=grid_id,
    )


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
    case, events = domain.dispatch(J, reported(category), "a1")
    assert (case.status, case.tier, case.unit_id, case.assignment_id) == (
        CaseStatus.ASSIGNED,
        tier,
        unit,
        "a1",
    )
    [assigned] = events
    assert isinstance(assigned, CaseAssigned)
    assert (assigned.unit_id, assigned.tier, assigned.assignment_id) == (unit, tier, "a1")


def test_an_unknown_category_is_unroutable():
    with pytest.raises(UnroutableCase):
        domain.dispatch(J, reported("garbage").model_copy(update={"category": "ufo"}), "a1")


def test_claim_then_resolve_moves_the_case_and_records_events():
    case, _ = domain.dispatch(J, reported("garbage"), "a1")
    case, [claimed] = domain.claim(case, TicketClaimed(case_id="c1", ticket_id="a1", unit_id=case.unit_id))
    assert case.status is CaseStatus.CLAIMED and isinstance(claimed, CaseClaimed)
    case, [resolved] = domain.resolve(
        case, TicketResolved(case_id="c1", ticket_id="a1", unit_id=case.unit_id, note="cleared")
    )
    assert case.status is CaseStatus.RESOLVED
    assert isinstance(resolved, CaseResolved) and resolved.note == "cleared"


def test_a_ticket_that_is_not_the_current_assignment_changes_nothing():
    case, _ = domain.dispatch(J, reported("garbage"), "a1")
    with pytest.raises(InvalidTransition):
        domain.claim(case, TicketClaimed(case_id="c1", ticket_id="old", unit_id=case.unit_id))


def test_resolving_an_unclaimed_case_is_refused():
    case, _ = domain.dispatch(J, reported("garbage"), "a1")
    with pytest.raises(InvalidTransition):
        domain.resolve(case, TicketResolved(case_id="c1", ticket_id="a1", unit_id=case.unit_id, note="x"))


ticket_events = st.lists(st.sampled_from(["claim", "resolve", "claim-stale", "resolve-stale"]), max_size=12)


@given(ticket_events, st.sampled_from([c.code for c in J.categories]), st.sampled_from([g.id for g in J.grids]))
def test_any_sequence_of_ticket_events_leaves_one_valid_state(steps, category, grid_id):
    case, _ = domain.dispatch(J, reported(category, grid_id), "a1")
    order = [CaseStatus.ASSIGNED, CaseStatus.CLAIMED, CaseStatus.RESOLVED]
    for step in steps:
        ticket = "stale" if step.endswith("stale") else "a1"
        before = case
        try:
            if step.startswith("claim"):
                case, events = domain.claim(case, TicketClaimed(case_id="c1", ticket_id=ticket, unit_id="u"))
            else:
                case, events = domain.resolve(
                    case, TicketResolved(case_id="c1", ticket_id=ticket, unit_id="u", note="n")
                )
        except InvalidTransition:
            assert case == before  # a refused event changes nothing
            continue
        assert ticket == "a1" and len(events) == 1
        assert order.index(case.status) == order.index(before.status) + 1  # one step forward
        assert case.assignment_id == "a1" and case.unit_id == before.unit_id
    assert case.status in order
