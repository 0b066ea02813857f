"""Routing policy: categories, the tier each starts at, who handles them at the grid tier
(the grid worker, a volunteer pool or a property company), the departments that handle them,
SLA limits per priority and tier, and the working-hours calendar. Loaded from a data file
and validated at start-up, with errors that name the bad key."""

import math
import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.district.events import Priority, Tier
from services.district.jurisdiction import Jurisdiction, PoolLevel, UnitKind
from services.district.text import words

TIERS: tuple[Tier, ...] = (Tier.GRID, Tier.COMMUNITY, Tier.STREET, Tier.BUREAU)
PRIORITY_RANK = {Priority.NORMAL: 0, Priority.URGENT: 1, Priority.EMERGENCY: 2}

_LIMIT = re.compile(
    r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|seconds?|m|min|minutes?|h|hours?|d|days?|"
    r"working\s+hours?|working\s+days?)\s*$"
)


class Limit(BaseModel):
    """A time limit: calendar time, or working time counted on the policy's calendar."""

    model_config = ConfigDict(frozen=True)
    duration: timedelta = timedelta(0)
    working: bool = False
    working_days: float = 0
    text: str = ""

    def scaled(self, fraction: float) -> "Limit":
        return Limit(
            duration=self.duration * fraction,
            working=self.working,
            working_days=self.working_days * fraction,
            text=f"{fraction:.0%} of {self.text}",
        )


def parse_limit(value: object) -> object:
    if not isinstance(value, str):
        return value
    m = _LIMIT.match(value)
    if not m:
        raise ValueError(
            f"{value!r} is not a time limit; write e.g. '90s', '30m', '4h', '2d', '4 working hours', '2 working days'"
        )
    n, unit = float(m["n"]), m["unit"]
    if unit.startswith("working"):
        if "hour" in unit:
            return {"duration": timedelta(hours=n), "working": True, "text": value.strip()}
        return {"working_days": n, "working": True, "text": value.strip()}
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit[0]]
    return {"duration": timedelta(seconds=n * seconds), "working": False, "text": value.strip()}


LimitField = Annotated[Limit, BeforeValidator(parse_limit)]


class Calendar(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    timezone: str = "Asia/Shanghai"
    day_start: time = time(9, 0)
    day_end: time = time(17, 30)
    working_days: list[int] = Field(default=[0, 1, 2, 3, 4], description="0 = Monday")
    holidays: list[date] = []
    extra_working_days: list[date] = Field(default=[], description="weekend days worked in lieu (调休)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        return tz

    @model_validator(mode="after")
    def _day_is_positive(self) -> Self:
        if self.day_end <= self.day_start:
            raise ValueError("day_end must be after day_start")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def midnight(self, at: datetime) -> datetime:
        """The start of the local day `at` falls on, in the policy's zone."""
        return at.astimezone(self.zone).replace(hour=0, minute=0, second=0, microsecond=0)

    @cached_property
    def day_length(self) -> timedelta:
        return datetime.combine(date.min, self.day_end) - datetime.combine(date.min, self.day_start)

    def is_working_day(self, d: date) -> bool:
        if d in self.extra_working_days:
            return True
        return d.weekday() in self.working_days and d not in self.holidays

    def add(self, start: datetime, limit: Limit) -> datetime:
        """The moment `limit` runs out when started at `start`."""
        if not limit.working:
            return start + limit.duration
        # "N working days" is N full days of working hours.
        remaining = limit.duration + self.day_length * limit.working_days
        local = start.astimezone(self.zone)
        for _ in range(3700):  # ten years of days: a calendar with no working day fails loudly
            day = local.date()
            opens = datetime.combine(day, self.day_start, self.zone)
            closes = datetime.combine(day, self.day_end, self.zone)
            if self.is_working_day(day) and local < closes:
                begin = max(local, opens)
                if remaining <= closes - begin:
                    return (begin + remaining).astimezone(start.tzinfo)
                remaining -= closes - begin
            local = datetime.combine(day + timedelta(days=1), self.day_start, self.zone)
        raise ValueError("the calendar has no working time in the next ten years")


class QuietHours(BaseModel):
    """When residents are not disturbed: a message that is not urgent, falling due in these
    hours (local time), is held until they end; never dropped. `start` after `end` spans midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: time = time(22, 0)
    end: time = time(7, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("quiet_hours: start and end are the same time; leave quiet_hours out for none")
        return self

    def until(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """When the quiet hours around `at` end (in `at`'s time zone), or None if `at` is not in them."""
        local = at.astimezone(zone)
        now = local.timetz().replace(tzinfo=None)
        if self.start < self.end:
            inside = self.start <= now < self.end
            ends = local.date()
        else:
            inside = now >= self.start or now < self.end
            ends = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(ends, self.end, zone).astimezone(at.tzinfo)


class TierSla(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    response: LimitField
    resolution: LimitField


class AttributeValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    name: str
    name_zh: str | None = None


class Attribute(BaseModel):
    """A category-specific question, typed as Open311 service definitions type them."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    datatype: Literal["string", "text", "number", "datetime", "singlevaluelist", "multivaluelist"]
    required: bool = False
    description: str
    description_zh: str | None = None
    values: list[AttributeValue] = []

    @model_validator(mode="after")
    def _lists_have_values(self) -> Self:
        if self.datatype.endswith("valuelist") and not self.values:
            raise ValueError(f"attribute {self.code!r} is a {self.datatype} and needs values")
        return self

    def check(self, value: object) -> object:
        """The value in canonical form, or ValueError saying what is expected."""
        keys = [v.key for v in self.values]
        match self.datatype:
            case "string" | "text":
                if not isinstance(value, str) or not (text := words(value)):
                    raise ValueError("must be non-empty text")
                return text
            case "number":
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValueError("must be a number")
                return value
            case "datetime":
                try:
                    return datetime.fromisoformat(str(value)).isoformat()
                except ValueError:
                    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-02T09:30:00+08:00") from None
            case "singlevaluelist":
                if value not in keys:
                    raise ValueError(f"must be one of {keys}")
                return value
            case _:
                if not isinstance(value, list) or not value or any(v not in keys for v in value):
                    raise ValueError(f"must be a non-empty list of {keys}")
                return value


class Handler(StrEnum):
    """Who handles a category's cases at the grid tier."""

    GRID = "grid"  # the grid worker
    POOL = "pool"  # the volunteer pool of the case's community or street (群众点单, 微心愿)
    PROPERTY = "property"  # the property company of the compound the case lies in (红色物业)


class CategoryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_zh: str | None = None
    start_tier: Tier
    emergency_start_tier: Tier | None = None
    handler: Handler = Field(
        Handler.GRID,
        description="who handles it at the grid tier; where there is no such pool or compound, the grid worker",
    )
    pool: PoolLevel | None = Field(
        None, description="with handler: pool, whose pool: the community's (the default) or the street's"
    )
    departments: list[str] = Field(min_length=1, description="lead department first")
    sla: dict[Priority, dict[Tier, TierSla]] = {}
    attributes: list[Attribute] = []
    public: bool = Field(
        True,
        description="whether its cases may appear in the public Open311 listing; false for problems "
        "inside homes or between neighbours",
    )

    @model_validator(mode="after")
    def _handler_at_grid_tier(self) -> Self:
        if self.handler is not Handler.GRID and self.start_tier is not Tier.GRID:
            raise ValueError(
                f"category {self.code!r}: handler {self.handler.value!r} names who handles it at the grid tier, "
                f"but it starts at the {self.start_tier.value} tier; give it start_tier: grid or drop the handler"
            )
        if self.pool is not None and self.handler is not Handler.POOL:
            raise ValueError(f"category {self.code!r}: pool applies only with handler: pool")
        return self

    @property
    def pool_level(self) -> PoolLevel:
        return self.pool or PoolLevel.COMMUNITY

    def check_attributes(self, given: dict[str, object]) -> tuple[dict[str, object], list[tuple[str, str]]]:
        """Canonical values and the problems, as (attribute code, what is wrong)."""
        known = {a.code: a for a in self.attributes}
        problems = [(code, f"unknown attribute for category {self.code!r}") for code in given if code not in known]
        values: dict[str, object] = {}
        for code, attribute in known.items():
            if code not in given or given[code] in (None, ""):
                if attribute.required:
                    problems.append((code, f"required: {attribute.description}"))
                continue
            try:
                values[code] = attribute.check(given[code])
            except ValueError as exc:
                problems.append((code, str(exc)))
        return values, problems


class DuplicatePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    distance_m: float = Field(50, gt=0, description="reports this close to an open case of the same category")
    window: LimitField = Field(description="...and this recent are linked to it")

    @field_validator("window")
    @classmethod
    def _calendar_time(cls, window: Limit) -> Limit:
        if window.working:
            raise ValueError("the duplicate window counts calendar time: write e.g. '72h' or '3d'")
        return window


class ScorecardPolicy(BaseModel):
    """红星考评: how `/v1/ops/scorecards` weighs a unit's rates into its score (0-100): the
    weighted mean of the rates the unit has in the window (docs/architecture.md, Figures)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    response: float = Field(0.3, ge=0, description="weight of the response rate (响应率)")
    resolution: float = Field(0.4, ge=0, description="weight of the resolution rate (办结率)")
    satisfaction: float = Field(0.3, ge=0, description="weight of the satisfaction rate (满意率)")
    min_assignments: int = Field(5, ge=0, description="units given fewer assignments in the window are not ranked")

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if self.response + self.resolution + self.satisfaction <= 0:
            raise ValueError("scorecard: at least one weight must be positive")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    calendar: Calendar = Calendar()
    warning_at: float = Field(0.8, gt=0, lt=1, description="warn when this fraction of a limit has passed")
    max_returns: int = Field(2, ge=0, description="returns after which a case goes straight to the street tier")
    supervision_repeat: LimitField = Field(description="how often a supervised case alerts again")
    satisfaction_window: LimitField = Field(description="how long a resident may answer the satisfaction visit")
    quiet_hours: QuietHours | None = Field(
        None, description="local hours in which residents' messages that are not urgent are held (none: never held)"
    )
    duplicates: DuplicatePolicy
    emergency_start_tier: Tier = Tier.COMMUNITY
    household_flags: dict[str, Priority] = Field(
        default={}, description="ledger colour → the priority a flagged household's report gets"
    )
    channel_priorities: dict[str, Priority] = Field(
        default={}, description="channel → the least priority its reports get (e.g. one_key → emergency)"
    )
    sla: dict[Priority, dict[Tier, TierSla]]
    categories: list[CategoryPolicy] = Field(min_length=1)
    scorecard: ScorecardPolicy = ScorecardPolicy()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        problems = [
            f"sla.{p.value}.{t.value}: missing" for p in Priority for t in TIERS if t not in self.sla.get(p, {})
        ]
        codes = [c.code for c in self.categories]
        problems += [f"categories: duplicate code {c!r}" for c in sorted({c for c in codes if codes.count(c) > 1})]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def _by_code(self) -> dict[str, CategoryPolicy]:
        return {c.code: c for c in self.categories}

    def category(self, code: str) -> CategoryPolicy | None:
        return self._by_code.get(code)

    def effective_priority(self, priority: Priority, household_flag: str | None, channel: str = "") -> Priority:
        flagged = self.household_flags.get(household_flag or "", Priority.NORMAL)
        called = self.channel_priorities.get(channel, Priority.NORMAL)
        return max(priority, flagged, called, key=PRIORITY_RANK.__getitem__)

    def start_tier(self, code: str, priority: Priority) -> Tier:
        cat = self._by_code[code]
        if priority is Priority.EMERGENCY:
            return cat.emergency_start_tier or self.emergency_start_tier
        return cat.start_tier

    def tier_sla(self, code: str, priority: Priority, tier: Tier) -> TierSla:
        override = self._by_code[code].sla.get(priority, {}).get(tier)
        return override or self.sla[priority][tier]

    def check_against(self, j: Jurisdiction) -> None:
        problems = []
        for cat in self.categories:
            for d in cat.departments:
                unit = j.unit(d)
                if unit is None or unit.kind is not UnitKind.DEPARTMENT:
                    problems.append(
                        f"categories[{cat.code}].departments: {d!r} is not a department of {j.district.name}"
                    )
        if problems:
            raise PolicyError("; ".join(problems))


class PolicyError(ValueError):
    pass


def next_tier(tier: Tier) -> Tier | None:
    i = TIERS.index(tier)
    return TIERS[i + 1] if i + 1 < len(TIERS) else None


def load_policy(path: Path, jurisdiction: Jurisdiction | None = None) -> Policy:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy file {path}:\n{exc}") from None
    if jurisdiction is not None:
        policy.check_against(jurisdiction)
    return policy
