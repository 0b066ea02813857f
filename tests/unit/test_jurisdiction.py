import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from services.district.jurisdiction import JurisdictionError, PoolLevel, UnitKind, label, load_jurisdiction
from services.runtime.settings import DATA_DIR

DEMO = DATA_DIR / "district.yaml"
QINGHE_VOLUNTEERS = {"name": "Qinghe volunteers", "name_zh": "青河街道志愿者队伍"}


@pytest.fixture(scope="module")
def j():
    return load_jurisdiction(DEMO)


def test_demo_district_is_big_enough_to_route(j):
    assert len(j.streets) >= 2
    assert len(j.communities) >= 4
    assert len(j.grids) >= 12
    assert {u.kind for u in j.units} == set(UnitKind)
    assert all(j.unit(g.unit_id).kind is UnitKind.GRID for g in j.grids)


def test_every_grid_centroid_locates_to_its_own_grid(j):
    for grid in j.grids:
        c = grid.shape.centroid
        assert j.locate(c.y, c.x).id == grid.id


def test_point_outside_every_grid_locates_nowhere(j):
    assert j.locate(0.0, 0.0) is None
    assert j.locate(30.499, 114.305) is None  # just south of the district


def test_point_on_a_shared_border_resolves_to_the_smallest_grid_id(j):
    # 30.51 is the border between the first and second row of grids of community C1.
    assert j.locate(30.51, 114.305).id == "G11"
    # A corner shared by four grids.
    assert j.locate(30.51, 114.31).id == "G11"


CJK = re.compile("[\u4e00-\u9fff]")


def test_everything_named_in_the_demo_district_has_a_chinese_name(j):
    named = [j.district, *j.streets, *j.communities, *j.grids, *j.units, *j.pools, *j.compounds]
    assert len(named) > 50
    for thing in named:
        assert CJK.search(thing.name_zh), f"{thing.id}: {thing.name_zh!r}"
        assert not CJK.search(thing.name), f"{thing.id}: {thing.name!r}"
    assert len({u.name_zh for u in j.units}) == len(j.units)
    assert len({g.name_zh for g in j.grids}) == len(j.grids)
    assert (j.grid("G11").name_zh, j.unit("U-G11").name_zh) == ("枫林社区第一网格", "枫林社区第一网格工作站")
    assert (j.unit("U-C1").name_zh, j.unit("U-S1").name_zh) == ("枫林社区居委会", "青河街道办事处")
    assert j.unit("P-C1").name_zh == j.pool("P-C1").name_zh


def test_an_address_is_found_by_either_spelling(j):
    assert j.addresses and all(a.address_zh and CJK.search(a.address_zh) for a in j.addresses)
    for said in ("3 Maple Lane", "3 maple lane,", "枫林路3号", "枫林路 3 号", " 枫林路3号，"):
        assert j.grid_at_address(said).id == "G11", said
    assert j.grid_at_address("石桥路40号").id == "G23"
    assert j.grid_at_address("枫林路99号") is None


def test_a_label_is_the_name_in_the_readers_language(j):
    grid = j.grid("G11")
    assert [label(grid, lang) for lang in ("zh-CN", "zh", "en", "en-GB")] == [
        "枫林社区第一网格",
        "枫林社区第一网格",
        "Maple Lane Grid 1",
        "Maple Lane Grid 1",
    ]
    assert label(j.unit("D-URBAN"), "zh-CN") == "兰溪区城市管理局"
    untranslated = SimpleNamespace(name="Something", name_zh=None)  # as a category may be
    assert label(untranslated, "zh-CN") == "Something"


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    mutate(raw)
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw["units"][0].pop("name_zh"), r"units\.0\.name_zh\s+Field required"),
        (lambda raw: raw["grids"][0].pop("name_zh"), r"grids\.0\.name_zh\s+Field required"),
        (lambda raw: raw["grids"][1].update(name_zh=" \u200b "), r"grids\.1\.name_zh\s+cannot be blank"),
        (lambda raw: raw["units"][2].update(name=""), r"units\.2\.name\s+cannot be blank"),
        (lambda raw: raw["compounds"][0].update(name_zh=None), r"compounds\.0\.name_zh\s+Input should be a valid str"),
    ],
)
def test_a_missing_or_blank_name_is_refused_by_where_it_is(tmp_path, mutate, message):
    with pytest.raises(JurisdictionError, match=message):
        load_jurisdiction(_write(tmp_path, mutate))


def test_a_name_is_stripped(tmp_path):
    j = load_jurisdiction(_write(tmp_path, lambda raw: raw["grids"][0].update(name_zh="  枫林一格 ")))
    assert j.grid("G11").name_zh == "枫林一格"


def test_a_grid_pointing_at_a_missing_community_is_refused_by_name(tmp_path):
    path = _write(tmp_path, lambda raw: raw["grids"][0].update(community_id="C404"))
    with pytest.raises(JurisdictionError, match=r"grids\[G11\]: community 'C404' does not exist"):
        load_jurisdiction(path)


def test_a_self_crossing_polygon_is_refused(tmp_path):
    bowtie = [[114.30, 30.50], [114.31, 30.51], [114.31, 30.50], [114.30, 30.51]]
    path = _write(tmp_path, lambda raw: raw["grids"][0].update(polygon=bowtie))
    with pytest.raises(JurisdictionError, match="simple ring"):
        load_jurisdiction(path)


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(JurisdictionError, match="cannot read"):
        load_jurisdiction(tmp_path / "missing.yaml")


# -- pools, compounds and what a supervisor sees -------------------------------------------

IN_OSMANTHUS = (30.5025, 114.3125)  # compound CP-OSMANTHUS, grid G21, community C2
IN_RIVERSIDE = (30.5125, 114.3325)  # compound CP-RIVERSIDE, grid G42, community C4


def test_a_point_in_a_compound_finds_it_and_its_property_company(j):
    compound = j.compound_at(*IN_OSMANTHUS)
    assert (compound.id, compound.community_id, compound.property_unit_id) == ("CP-OSMANTHUS", "C2", "PM-GREEN")
    assert j.compound_at(*IN_RIVERSIDE).property_unit_id == "PM-HARMONY"
    assert j.compound_at(30.505, 114.315) is None  # G21's centre, outside the compound


def test_a_point_on_a_border_shared_by_two_compounds_belongs_to_the_smaller_id(tmp_path):
    def twin(raw):  # the same size, east of CP-OSMANTHUS (whose east side is at 114.314)
        east = [[114.314, 30.501], [114.317, 30.501], [114.317, 30.504], [114.314, 30.504]]
        raw["compounds"].append({**raw["compounds"][0], "id": "CP-AAA", "polygon": east})

    j = load_jurisdiction(_write(tmp_path, twin))
    assert j.compound_at(30.5025, 114.314).id == "CP-AAA"


def test_the_demo_district_has_a_pool_per_community(j):
    assert [j.pool_for(c.id, PoolLevel.COMMUNITY).id for c in j.communities] == ["P-C1", "P-C2", "P-C3", "P-C4"]
    assert j.pool_for("C1", PoolLevel.STREET) is None
    assert j.pool("P-C1").name_zh == "枫林社区志愿者队伍"
    assert j.unit("P-C1").kind is UnitKind.POOL


def test_a_community_office_sees_its_grids_pool_and_property_companies(j):
    assert j.units_under("U-C2") == {"U-C2", "U-G21", "U-G22", "U-G23", "P-C2", "PM-GREEN"}
    assert j.units_under("U-C1") == {"U-C1", "U-G11", "U-G12", "U-G13", "P-C1"}


def test_a_street_office_sees_its_communities_and_all_under_them(j):
    assert j.units_under("U-S2") == {
        "U-S2",
        *("U-C3", "U-G31", "U-G32", "U-G33", "P-C3"),
        *("U-C4", "U-G41", "U-G42", "U-G43", "P-C4", "PM-HARMONY"),
    }


def test_a_street_pool_is_under_its_street_office_only(tmp_path):
    def street_pool(raw):
        raw["units"].append({"id": "P-S1", **QINGHE_VOLUNTEERS, "kind": "pool"})
        raw["pools"].append({"id": "P-S1", **QINGHE_VOLUNTEERS, "street_id": "S1"})

    j = load_jurisdiction(_write(tmp_path, street_pool))
    assert "P-S1" in j.units_under("U-S1")
    assert "P-S1" not in j.units_under("U-C1")


@pytest.mark.parametrize("unit_id", ["U-G11", "P-C1", "PM-GREEN", "D-URBAN", "no-such-unit"])
def test_any_other_unit_sees_only_itself(j, unit_id):
    assert j.units_under(unit_id) == {unit_id}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw["pools"][0].update(street_id="S1"), r"pool 'P-C1': give exactly one of"),
        (lambda raw: raw["pools"][0].pop("community_id"), r"pool 'P-C1': give exactly one of"),
        (lambda raw: raw["pools"][0].update(id="U-G11"), r"pools\[U-G11\]: unit 'U-G11' is a grid, expected pool"),
        (lambda raw: raw["pools"][0].update(id="P-NONE"), r"pools\[P-NONE\]: unit 'P-NONE' is not in units"),
        (lambda raw: raw["pools"][0].update(community_id="C404"), r"pools\[P-C1\]: community 'C404' does not exist"),
        (
            lambda raw: raw["pools"][1].update(community_id="C1"),
            r"pools\[P-C2\]: community 'C1' has a pool already, 'P-C1'",
        ),
        (
            lambda raw: raw["compounds"][0].update(property_unit_id="U-C2"),
            r"compounds\[CP-OSMANTHUS\]: unit 'U-C2' is a community, expected property",
        ),
        (
            lambda raw: raw["compounds"][0].update(community_id="C404"),
            r"compounds\[CP-OSMANTHUS\]: community 'C404' does not exist",
        ),
        (
            lambda raw: raw["compounds"][0].update(
                polygon=[[114.311, 30.501], [114.314, 30.504], [114.314, 30.501], [114.311, 30.504]]
            ),
            "simple ring",
        ),
    ],
)
def test_bad_pools_and_compounds_are_refused_by_name(tmp_path, mutate, message):
    with pytest.raises(JurisdictionError, match=message):
        load_jurisdiction(_write(tmp_path, mutate))


def test_a_district_without_pools_or_compounds_routes_as_before(tmp_path):
    def bare(raw):
        del raw["pools"], raw["compounds"]

    j = load_jurisdiction(_write(tmp_path, bare))
    assert j.compound_at(*IN_OSMANTHUS) is None
    assert j.units_under("U-C2") == {"U-C2", "U-G21", "U-G22", "U-G23"}
