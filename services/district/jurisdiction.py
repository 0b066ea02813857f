"""The administrative tree (district → street → community → grid) and its handling units,
loaded from a data file and validated at start-up. Beside the tree: volunteer pools, each
belonging to a community or a street, and residential compounds (小区), each managed by a
property company. Everything named has an English and a Chinese name; `label` picks the one a
reader's language wants."""

import re
from collections import defaultdict
from collections.abc import Sequence
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Protocol, Self, TypeVar

import numpy as np
import shapely
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator
from shapely.geometry import Polygon

from services.district.text import WORDS


class UnitKind(StrEnum):
    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    DEPARTMENT = "department"
    POOL = "pool"  # volunteers (and staff) who claim residents' orders and micro-wishes
    PROPERTY = "property"  # a property-management company (物业公司)


class PoolLevel(StrEnum):
    """Whose volunteer pool: a community's or a street's."""

    COMMUNITY = "community"
    STREET = "street"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# A name pages and messages show: something visible, stripped (a blank name would show as nothing).
Name = Annotated[str, WORDS]


class Named(Protocol):
    """Anything with an English and a Chinese name: the district's places and units, a category."""

    @property
    def name(self) -> str: ...

    @property
    def name_zh(self) -> str | None: ...


def label(thing: Named, lang: str) -> str:
    """A thing's name in a reader's language: the Chinese one in Chinese (`zh`, `zh-CN`...),
    the English one otherwise. A thing without a Chinese name (a category may lack one) shows
    its English name in Chinese too."""
    return (thing.name_zh if lang.lower().startswith("zh") else None) or thing.name


class Adapter(_Frozen):
    """How a unit's own IT system is connected (docs/adapters.md): assignments POSTed to `url`
    as signed webhooks, and/or published on the unit's Kafka topics (`kafka`); the unit's
    system answers on the inbound endpoint or the updates topic. The signing secret (whsec_…)
    comes only from the environment variable `secret_env` names, never from this file."""

    url: HttpUrl | None = None
    secret_env: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]*$")
    kafka: bool = False
    contact: bool = Field(False, description="send the resident's call-back contact with each assignment")

    @model_validator(mode="after")
    def _says_how(self) -> Self:
        if self.url is None and not self.kafka:
            raise ValueError("an adapter needs a url (webhooks), kafka: true, or both")
        if self.url is not None and self.secret_env is None:
            raise ValueError("a webhook adapter needs secret_env: the environment variable holding its whsec_ secret")
        return self


EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
PHONE = r"^\+?[0-9][0-9 -]{5,19}$"


class Notify(_Frozen):
    """Where a unit's staff hear of its tickets (its duty address) and how: one message per new
    ticket, or with `digest_minutes` one message per that many minutes listing them (warnings,
    breaches and emergencies still go at once)."""

    email: str | None = Field(None, max_length=254, pattern=EMAIL)
    phone: str | None = Field(None, pattern=PHONE)
    digest_minutes: int | None = Field(None, ge=1, le=24 * 60)


class Unit(_Frozen):
    id: str
    name: Name
    name_zh: Name
    kind: UnitKind
    adapter: Adapter | None = None
    notify: Notify | None = None


class Street(_Frozen):
    id: str
    name: Name
    name_zh: Name
    unit_id: str


class Community(_Frozen):
    id: str
    name: Name
    name_zh: Name
    street_id: str
    unit_id: str


def _simple_ring(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not Polygon(ring).is_valid:
        raise ValueError("polygon must be a simple ring of [lon, lat] points")
    return ring


Ring = Annotated[
    list[tuple[float, float]], Field(min_length=3, description="[lon, lat] ring"), AfterValidator(_simple_ring)
]


class Grid(_Frozen):
    id: str
    name: Name
    name_zh: Name
    community_id: str
    unit_id: str
    polygon: Ring

    @cached_property
    def shape(self) -> Polygon:
        return Polygon(self.polygon)


class Pool(_Frozen):
    """A volunteer pool (群众点单、党员接单; 微心愿): its id is also its unit's id, so its
    tickets carry the pool id as their unit."""

    id: str
    name: Name
    name_zh: Name
    community_id: str | None = None
    street_id: str | None = None

    @model_validator(mode="after")
    def _one_parent(self) -> Self:
        if (self.community_id is None) == (self.street_id is None):
            raise ValueError(f"pool {self.id!r}: give exactly one of community_id and street_id")
        return self

    @property
    def area(self) -> tuple[PoolLevel, str]:
        """Whose pool it is: (community, its id) or (street, its id)."""
        if self.community_id is not None:
            return PoolLevel.COMMUNITY, self.community_id
        return PoolLevel.STREET, str(self.street_id)


class Compound(_Frozen):
    """A residential compound (小区) and the property company (红色物业) that manages it."""

    id: str
    name: Name
    name_zh: Name
    community_id: str
    property_unit_id: str
    polygon: Ring

    @cached_property
    def shape(self) -> Polygon:
        return Polygon(self.polygon)


Area = TypeVar("Area", Grid, Compound)


def _prepared(areas: Sequence[Grid | Compound]) -> np.ndarray:
    """The areas' polygons, prepared: testing a point against all of them at once
    (`intersects_xy`, in C) costs less than building a Point to query an STRtree: about
    4 µs against 25 for a district of a dozen grids, about the same (30 µs) for a thousand."""
    shapes = np.array([a.shape for a in areas], dtype=object)
    shapely.prepare(shapes)
    return shapes


def _covering(areas: Sequence[Area], shapes: np.ndarray, lat: float, lon: float) -> Area | None:
    """The area whose polygon covers the point. A point on a shared border belongs to the
    area with the smallest id, so the answer never depends on index order."""
    # A point intersects a polygon exactly when the polygon covers it (inside or on its border).
    hits = [areas[i] for i in shapely.intersects_xy(shapes, lon, lat).nonzero()[0]]
    return min(hits, key=lambda a: a.id) if hits else None


class Address(_Frozen):
    """A building of the address table, by its English and its Chinese spelling (either finds it)."""

    address: str = Field(min_length=1)
    address_zh: str | None = Field(None, min_length=1)
    grid_id: str


def normalise_address(text: str) -> str:
    """An address as the table matches it: case, commas and spacing ignored, and no spaces
    beside Chinese characters (枫林路 3 号 is 枫林路3号)."""
    text = " ".join(text.replace(",", " ").replace("，", " ").lower().split())
    return _BESIDE_HAN.sub("", text)


_BESIDE_HAN = re.compile(r"(?<=[\u3400-\u9fff]) | (?=[\u3400-\u9fff])")


class District(_Frozen):
    id: str
    name: Name
    name_zh: Name


class JurisdictionError(ValueError):
    pass


class Jurisdiction(_Frozen):
    district: District
    streets: list[Street]
    communities: list[Community]
    grids: list[Grid]
    units: list[Unit]
    pools: list[Pool] = []
    compounds: list[Compound] = []
    addresses: list[Address] = []

    @model_validator(mode="after")
    def _references_hold(self) -> Self:
        units = {u.id: u for u in self.units}
        problems: list[str] = []

        def need(owner: str, unit_id: str, kind: UnitKind) -> None:
            unit = units.get(unit_id)
            if unit is None:
                problems.append(f"{owner}: unit {unit_id!r} is not in units")
            elif unit.kind != kind:
                problems.append(f"{owner}: unit {unit_id!r} is a {unit.kind}, expected {kind}")

        for label, items in (
            ("units", self.units),
            ("streets", self.streets),
            ("communities", self.communities),
            ("grids", self.grids),
            ("pools", self.pools),
            ("compounds", self.compounds),
        ):
            ids = [i.id for i in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                problems.append(f"{label}: duplicate ids {dupes}")
        streets = {s.id for s in self.streets}
        communities = {c.id for c in self.communities}
        for s in self.streets:
            need(f"streets[{s.id}]", s.unit_id, UnitKind.STREET)
        for c in self.communities:
            need(f"communities[{c.id}]", c.unit_id, UnitKind.COMMUNITY)
            if c.street_id not in streets:
                problems.append(f"communities[{c.id}]: street {c.street_id!r} does not exist")
        for g in self.grids:
            need(f"grids[{g.id}]", g.unit_id, UnitKind.GRID)
            if g.community_id not in communities:
                problems.append(f"grids[{g.id}]: community {g.community_id!r} does not exist")
        served: dict[tuple[PoolLevel, str], str] = {}  # whose pool -> pool id
        for p in self.pools:
            need(f"pools[{p.id}]", p.id, UnitKind.POOL)
            level, area = p.area
            if area not in (communities if level is PoolLevel.COMMUNITY else streets):
                problems.append(f"pools[{p.id}]: {level} {area!r} does not exist")
            elif p.area in served:
                problems.append(f"pools[{p.id}]: {level} {area!r} has a pool already, {served[p.area]!r}")
            else:
                served[p.area] = p.id
        for x in self.compounds:
            need(f"compounds[{x.id}]", x.property_unit_id, UnitKind.PROPERTY)
            if x.community_id not in communities:
                problems.append(f"compounds[{x.id}]: community {x.community_id!r} does not exist")
        grids = {g.id for g in self.grids}
        for a in self.addresses:
            if a.grid_id not in grids:
                problems.append(f"addresses[{a.address!r}]: grid {a.grid_id!r} does not exist")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def _shapes(self) -> np.ndarray:
        return _prepared(self.grids)

    @cached_property
    def _compound_shapes(self) -> np.ndarray:
        return _prepared(self.compounds)

    @cached_property
    def _by_id(self) -> dict[str, dict[str, BaseModel]]:
        return {
            "unit": {u.id: u for u in self.units},
            "street": {s.id: s for s in self.streets},
            "community": {c.id: c for c in self.communities},
            "grid": {g.id: g for g in self.grids},
            "pool": {p.id: p for p in self.pools},
        }

    def locate(self, lat: float, lon: float) -> Grid | None:
        """The grid whose polygon covers the point (the smallest id on a shared border)."""
        return _covering(self.grids, self._shapes, lat, lon)

    def compound_at(self, lat: float, lon: float) -> Compound | None:
        """The compound whose polygon covers the point (the smallest id on a shared border)."""
        return _covering(self.compounds, self._compound_shapes, lat, lon)

    @cached_property
    def _pools_by_area(self) -> dict[tuple[PoolLevel, str], Pool]:
        return {p.area: p for p in self.pools}

    def pool_for(self, community_id: str, level: PoolLevel) -> Pool | None:
        """The volunteer pool of a community, or of the street the community is in."""
        area = community_id if level is PoolLevel.COMMUNITY else self.community(community_id).street_id
        return self._pools_by_area.get((level, area))

    @cached_property
    def _subtrees(self) -> dict[str, frozenset[str]]:
        under: defaultdict[str, set[str]] = defaultdict(set)
        for c in self.communities:
            under[c.unit_id] |= {c.unit_id, *(g.unit_id for g in self.grids if g.community_id == c.id)}
            under[c.unit_id] |= {p.id for p in self.pools if p.community_id == c.id}
            under[c.unit_id] |= {x.property_unit_id for x in self.compounds if x.community_id == c.id}
        for s in self.streets:
            under[s.unit_id] |= {s.unit_id, *(p.id for p in self.pools if p.street_id == s.id)}
            for c in self.communities:
                if c.street_id == s.id:
                    under[s.unit_id] |= under[c.unit_id]
        return {unit_id: frozenset(ids) for unit_id, ids in under.items()}

    def units_under(self, unit_id: str) -> frozenset[str]:
        """The units whose tickets a supervisor of this unit may see, itself included: a
        community office sees its grids, its pool and the property companies of its
        compounds; a street office sees its communities and all under them, and its pool;
        any other unit sees only itself."""
        return self._subtrees.get(unit_id, frozenset({unit_id}))

    @cached_property
    def _addresses(self) -> dict[str, str]:
        spellings = [(a.address, a.grid_id) for a in self.addresses]
        spellings += [(a.address_zh, a.grid_id) for a in self.addresses if a.address_zh]
        return {normalise_address(spelling): grid_id for spelling, grid_id in spellings}

    def grid_at_address(self, address: str) -> Grid | None:
        """The grid of a building in the address table, by either spelling (case, commas and
        spacing ignored)."""
        grid_id = self._addresses.get(normalise_address(address))
        return self.grid(grid_id) if grid_id else None

    def find_grid(self, grid_id: str) -> Grid | None:
        return self._by_id["grid"].get(grid_id)  # type: ignore[return-value]

    def grid(self, grid_id: str) -> Grid:
        return self._by_id["grid"][grid_id]  # type: ignore[return-value]

    def community(self, community_id: str) -> Community:
        return self._by_id["community"][community_id]  # type: ignore[return-value]

    def street(self, street_id: str) -> Street:
        return self._by_id["street"][street_id]  # type: ignore[return-value]

    def unit(self, unit_id: str) -> Unit | None:
        return self._by_id["unit"].get(unit_id)  # type: ignore[return-value]

    def pool(self, pool_id: str) -> Pool:
        return self._by_id["pool"][pool_id]  # type: ignore[return-value]


def load_jurisdiction(path: Path) -> Jurisdiction:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise JurisdictionError(f"cannot read jurisdiction file {path}: {exc}") from None
    try:
        return Jurisdiction.model_validate(raw)
    except ValidationError as exc:
        raise JurisdictionError(f"invalid jurisdiction file {path}:\n{exc}") from None
