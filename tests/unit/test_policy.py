"""SLA arithmetic and policy loading: calendar time, working hours, weekends, holidays."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.district.events import Priority, Tier
from services.district.jurisdiction import PoolLevel, load_jurisdiction
from services.district.policy import Calendar, Handler, Limit, PolicyError, load_policy, parse_limit
from services.runtime.settings import DATA_DIR

SHANGHAI = "Asia/Shanghai"
J = load_jurisdiction(DATA_DIR / "district.yaml")
POLICY = load_policy(DATA_DIR / "policy.yaml", J)


def limit(text: str) -> Limit:
    return Limit.model_validate(parse_limit(text))


def local(y, mo, d, h, mi=0) -> datetime:
    """A Shanghai wall-clock time as an aware UTC datetime (Shanghai is UTC+8, no DST)."""
    return datetime(y, mo, d, h, mi, tzinfo=UTC) - timedelta(hours=8)


CAL = Calendar(
    timezone=SHANGHAI,
    day_start="09:00",
    day_end="17:30",
    holidays=["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"],
    extra_working_days=["2026-10-10"],
)


@pytest.mark.parametrize(
    ("text", "duration", "working"),
    [
        ("90s", timedelta(seconds=90), False),
        ("30m", timedelta(minutes=30), False),
        ("4h", timedelta(hours=4), False),
        ("2d", timedelta(days=2), False),
        ("4 working hours", timedelta(hours=4), True),
    ],
)
def test_limits_are_written_with_units(text, duration, working):
    parsed = limit(text)
    assert (parsed.duration, parsed.working) == (duration, working)


def test_a_limit_without_a_unit_is_refused_with_examples():
    with pytest.raises(ValueError, match="write e.g. '90s'"):
        parse_limit("4 fortnights")


def test_calendar_limits_ignore_working_hours():
    friday_evening = local(2026, 11, 6, 20)
    assert CAL.add(friday_evening, limit("4h")) == friday_evening + timedelta(hours=4)


def test_working_hours_skip_the_night_and_the_weekend():
    friday_4pm = local(2026, 11, 6, 16)
    # 1.5 h on Friday, then 2.5 h from Monday 09:00
    assert CAL.add(friday_4pm, limit("4 working hours")) == local(2026, 11, 9, 11, 30)


def test_working_days_across_a_weekend():
    friday_4pm = local(2026, 11, 6, 16)
    # 2 working days = 17 h of working time: Fri 1.5 h, Mon 8.5 h, Tue 7 h → Tue 16:00
    assert CAL.add(friday_4pm, limit("2 working days")) == local(2026, 11, 10, 16)


def test_a_report_made_at_night_starts_counting_next_morning():
    assert CAL.add(local(2026, 11, 3, 23), limit("2 working hours")) == local(2026, 11, 4, 11)


def test_working_time_skips_holidays_and_counts_a_make_up_saturday():
    # Wed 30 Sep 17:00 + 1 working day: 0.5 h on Wednesday, Thu 1 Oct and Fri 2 Oct are holidays,
    # the weekend and Mon–Wed 5–7 Oct too; Thu 8 Oct 09:00 + 8 h → 17:00.
    assert CAL.add(local(2026, 9, 30, 17), limit("1 working day")) == local(2026, 10, 8, 17)
    # Friday 9 Oct 17:00 + 1 working hour: Saturday 10 Oct is worked in lieu.
    assert CAL.add(local(2026, 10, 9, 17), limit("1 working hour")) == local(2026, 10, 10, 9, 30)


def test_the_demo_policy_routes_emergencies_and_flagged_households():
    assert POLICY.start_tier("streetlight", Priority.NORMAL) is Tier.COMMUNITY
    assert POLICY.start_tier("garbage", Priority.EMERGENCY) is Tier.COMMUNITY  # the policy's emergency tier
    assert POLICY.start_tier("one_key_help", Priority.EMERGENCY) is Tier.GRID  # the category's own
    assert POLICY.effective_priority(Priority.NORMAL, "red") is Priority.URGENT
    assert POLICY.effective_priority(Priority.EMERGENCY, "blue") is Priority.EMERGENCY
    assert POLICY.effective_priority(Priority.NORMAL, "yellow") is Priority.NORMAL


def test_a_category_can_override_one_tiers_sla():
    assert POLICY.tier_sla("elevator", Priority.NORMAL, Tier.COMMUNITY).response.text == "2 working hours"
    assert POLICY.tier_sla("water_leak", Priority.NORMAL, Tier.COMMUNITY).response.text == "4 working hours"


def _policy_file(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    mutate(raw)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_bad_limit_is_refused_naming_its_key(tmp_path):
    path = _policy_file(tmp_path, lambda raw: raw["sla"]["urgent"]["street"].update(response="soon"))
    with pytest.raises(PolicyError, match=r"sla\.urgent\.street\.response"):
        load_policy(path, J)


def test_a_missing_tier_is_refused(tmp_path):
    path = _policy_file(tmp_path, lambda raw: raw["sla"]["normal"].pop("bureau"))
    with pytest.raises(PolicyError, match=r"sla\.normal\.bureau: missing"):
        load_policy(path, J)


def test_a_department_that_does_not_exist_is_refused(tmp_path):
    path = _policy_file(tmp_path, lambda raw: raw["categories"][0].update(departments=["D-NOWHERE"]))
    with pytest.raises(PolicyError, match=r"categories\[garbage\]\.departments: 'D-NOWHERE'"):
        load_policy(path, J)


def test_the_demo_policy_names_pool_and_property_handlers():
    assert (POLICY.category("micro_wish").handler, POLICY.category("micro_wish").pool_level) == (
        Handler.POOL,
        PoolLevel.COMMUNITY,
    )
    assert POLICY.category("lift_fault").handler is Handler.PROPERTY
    assert POLICY.category("garbage").handler is Handler.GRID  # the default: the grid worker


def test_a_pool_or_property_handler_needs_a_category_starting_at_the_grid_tier(tmp_path):
    path = _policy_file(tmp_path, lambda raw: _category(raw, "streetlight").update(handler="property"))
    with pytest.raises(
        PolicyError, match=r"category 'streetlight': handler 'property' .* starts at the community tier"
    ):
        load_policy(path, J)


def test_a_pool_level_without_a_pool_handler_is_refused(tmp_path):
    path = _policy_file(tmp_path, lambda raw: _category(raw, "corridor_garbage").update(pool="street"))
    with pytest.raises(PolicyError, match=r"category 'corridor_garbage': pool applies only with handler: pool"):
        load_policy(path, J)


def test_an_unknown_handler_is_refused(tmp_path):
    path = _policy_file(tmp_path, lambda raw: _category(raw, "garbage").update(handler="volunteers"))
    with pytest.raises(PolicyError, match=r"categories\.0\.handler"):
        load_policy(path, J)


def _category(raw: dict, code: str) -> dict:
    return next(c for c in raw["categories"] if c["code"] == code)


def test_the_scorecard_weights_are_optional_and_checked(tmp_path):
    assert (POLICY.scorecard.response, POLICY.scorecard.resolution, POLICY.scorecard.satisfaction) == (0.3, 0.4, 0.3)
    weighed = load_policy(_policy_file(tmp_path, lambda raw: raw.update(scorecard={"satisfaction": 1})), J)
    assert (weighed.scorecard.satisfaction, weighed.scorecard.min_assignments) == (1, 5)
    none = {"response": 0, "resolution": 0, "satisfaction": 0}
    with pytest.raises(PolicyError, match="scorecard"):
        load_policy(_policy_file(tmp_path, lambda raw: raw.update(scorecard=none)), J)
    with pytest.raises(PolicyError, match=r"scorecard\.speed"):
        load_policy(_policy_file(tmp_path, lambda raw: raw.update(scorecard={"speed": 1})), J)
