from pathlib import Path

import pytest
import yaml

from services.jurisdiction import JurisdictionError, UnitKind, load_jurisdiction
from services.settings import DATA_DIR

DEMO = DATA_DIR / "district.yaml"


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


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    mutate(raw)
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


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
