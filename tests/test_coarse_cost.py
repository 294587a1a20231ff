"""Issue 28 (cost that follows the output): the features are classified once for the output and the
generator grid, and a window's class map and object heights come from one drawing of its features.
Both are shortcuts that must not change a pixel: each is checked against the long way round."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from rasterio import features as rio_features

from geogan.api import sample_osm_path
from geogan.classes import load_schema
from geogan.features import build_feature_sets, build_features
from geogan.grid import grid_from_bbox
from geogan.rasterizer import (VectorClassSource, burnable, draw_window, object_surface, rasterize_classes,
                               rasterize_object_heights)
from geogan.sources import RawLayer, osm_file_bounds, read_sources

from osm_factory import offset_lonlat

UTM = pyproj.CRS.from_epsg(32635)
MERC = pyproj.CRS.from_epsg(3857)


def _box_lonlat(lon: float, lat: float, east_m: float, north_m: float, w_m: float, h_m: float):
    x0, y0 = offset_lonlat(lon, lat, east_m, north_m)
    x1, y1 = offset_lonlat(lon, lat, east_m + w_m, north_m + h_m)
    return shapely.box(x0, y0, x1, y1)


@pytest.fixture(scope="module")
def town():
    """The sample town's features plus shaped roofs, building parts on an outline and a row of trees (every
    path of the object heights), with the bbox they were read on and its centre."""
    bbox = osm_file_bounds(sample_osm_path())
    report = read_sources([sample_osm_path()], bbox)
    lon, lat = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    extra = [(_box_lonlat(lon, lat, 0, 0, 14, 9), {"building": "house", "height": "9", "roof:shape": "gabled"}),
             (_box_lonlat(lon, lat, 30, 0, 20, 20), {"building": "yes", "height": "6"}),
             (_box_lonlat(lon, lat, 30, 0, 10, 20), {"building:part": "yes", "height": "15",
                                                     "roof:shape": "hipped"}),
             (_box_lonlat(lon, lat, 40, 0, 10, 20), {"building:part": "yes", "height": "4"}),
             (shapely.LineString([offset_lonlat(lon, lat, -40, -20), offset_lonlat(lon, lat, 40, -20)]),
              {"natural": "tree_row"})]
    geoms = np.array([g for g, _ in extra], dtype=object)
    report.layers.append(RawLayer("extra", geoms, [t for _, t in extra], is_osm=True))
    return report, bbox, (lon, lat)


def _same_features(a, b) -> None:
    assert len(a) == len(b)
    assert all(shapely.to_wkb(a.geometries) == shapely.to_wkb(b.geometries))
    for name in ("class_ids", "priorities", "heights_m"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    for name in a.buildings.__dataclass_fields__:
        assert np.array_equal(getattr(a.buildings, name), getattr(b.buildings, name), equal_nan=True), name
    assert a.counts_by_class == b.counts_by_class and (a.repaired, a.skipped, a.read) == (b.repaired, b.skipped, b.read)


def test_feature_sets_in_two_crss_are_those_built_one_by_one(town):
    report, _, centre = town
    schema = load_schema()
    out_feats, gen_feats = build_feature_sets(report, schema, (MERC, UTM), centre)
    _same_features(out_feats, build_features(report, schema, MERC, centre))
    _same_features(gen_feats, build_features(report, schema, UTM, centre))
    assert out_feats.buildings.trees.any() and out_feats.buildings.is_part.any()  # the data covers every path


def test_equal_crss_share_one_feature_set(town):
    report, _, centre = town
    out_feats, gen_feats = build_feature_sets(report, load_schema(), (UTM, pyproj.CRS.from_epsg(32635)), centre)
    assert out_feats is gen_feats


def _classes_burnt_directly(feats, grid) -> np.ndarray:
    """The class map burnt with class ids as values (how it was drawn before the ranks)."""
    out = np.zeros(grid.shape_yx, dtype=np.uint8)
    idx = feats.query(grid.bounds)
    shapes = burnable(feats.geometries[idx], feats.class_ids[idx].tolist(), grid)
    if shapes:
        rio_features.rasterize(shapes, out=out, transform=grid.transform)
    return out


@pytest.mark.parametrize("gsd_m", [0.5, 2.0, 10.0])
def test_one_drawing_gives_the_class_map_and_the_object_heights(town, gsd_m):
    report, bbox, centre = town
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", gsd_m)
    feats = build_features(report, load_schema(), grid.crs, centre)
    src = VectorClassSource(feats)
    windows = (grid, grid.window(grid.height // 3, grid.width // 4, grid.height // 5, grid.width // 5))
    assert [draw_window(feats, w).rank.dtype for w in windows] == [np.uint16, np.uint8]  # over / under 255 features
    for window in windows:
        classes = src.classes(window)  # keeps its drawing for the object heights asked next
        assert np.array_equal(classes, _classes_burnt_directly(feats, window))
        assert np.array_equal(rasterize_classes(feats, window), classes)
        top, bottom = src.object_height_layers(window)  # from the kept drawing
        fresh_top, fresh_bottom = rasterize_object_heights(feats, window, with_bottom=True)
        assert np.array_equal(top, fresh_top) and np.array_equal(bottom, fresh_bottom)
        assert (top > 0).any()
        assert np.array_equal(src.object_heights(window), fresh_top)  # nothing kept: drawn again


def test_the_parts_of_a_drawing_are_those_burnt_for_the_features_alone(town):
    report, bbox, centre = town
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 2.0)
    feats = build_features(report, load_schema(), grid.crs, centre)
    drawn = draw_window(feats, grid)
    positions = np.random.default_rng(0).permutation(len(drawn.idx))[: len(drawn.idx) // 3]
    expected = burnable(feats.geometries[drawn.idx[positions]], range(1, len(positions) + 1), grid)
    got = drawn.shapes_of(positions)
    assert [v for _, v in got] == [v for _, v in expected] and [s for s, _ in got] == [s for s, _ in expected]


def test_a_kept_drawing_is_only_used_for_its_own_features_and_window(town):
    report, bbox, centre = town
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 2.0)
    feats = build_features(report, load_schema(), grid.crs, centre)
    other = build_features(report, load_schema(), grid.crs, centre)
    half = grid.window(0, 0, grid.height // 2, grid.width)
    VectorClassSource(feats).classes(half)
    assert np.array_equal(VectorClassSource(feats).object_heights(grid), object_surface(feats, grid).top_m)
    VectorClassSource(other).classes(grid)
    assert np.array_equal(VectorClassSource(feats).object_heights(grid), object_surface(feats, grid).top_m)


def test_remembered_building_heights_are_those_worked_out_afresh():
    from geogan.heights import STOREY_HEIGHT_M, _building_heights, building_heights
    cases = [({"building": "house"}, 4.0), ({"building": "house", "name": "A"}, 9.0),
             ({"building": "yes", "roof:shape": "gabled", "building:levels": "2"}, 4.0),
             ({"building": "yes", "roof:shape": "gabled", "building:levels": "2"}, 7.0),
             ({"building:part": "yes", "height": "12", "min_height": "3", "roof:shape": "hipped"}, None),
             ({"building": "yes", "roof:shape": "wobbly", "height": "x"}, 5.0)]
    for _ in range(2):  # the second round from memory
        for tags, half_width_m in cases:
            fresh = _building_heights(tags, STOREY_HEIGHT_M, half_width_m)
            assert building_heights(tags, half_width_m=half_width_m) == fresh
    # the half-width sets a tagged roof's default height, and only counts then
    gabled = cases[2][0]
    assert building_heights(gabled, half_width_m=4.0).height_m != building_heights(gabled, half_width_m=7.0).height_m


def _burn(shapes, grid) -> np.ndarray:
    out = np.zeros(grid.shape_yx, dtype=np.uint16)
    if shapes:
        rio_features.rasterize(shapes, out=out, transform=grid.transform)
    return out


@pytest.mark.parametrize("gsd_m", [0.5, 10.0])
def test_shapes_without_a_pixel_centre_are_left_out_and_burn_nothing(gsd_m):
    """Boxes, triangles and slivers from a tenth of a pixel to three pixels, anywhere (on pixel-centre lines
    too): the pixels burnt without the shapes whose box holds no centre are those burnt with all of them."""
    from affine import Affine

    from geogan.grid import Grid
    from geogan.rasterizer import polygon_mappings, reach_pixel_centres
    rng = np.random.default_rng(int(gsd_m * 10))
    grid = Grid(UTM, Affine(gsd_m, 0, 500_000.3 * gsd_m, 0, -gsd_m, 6_650_000.7 * gsd_m), (40, 50))
    left, top = grid.transform.c, grid.transform.f
    shapes = []
    for _ in range(3000):
        w, h = rng.uniform(0.1, 3.0, 2) * gsd_m
        x, y = left + rng.uniform(-2, 52) * gsd_m, top - rng.uniform(-2, 42) * gsd_m
        if rng.random() < 0.3:  # an edge exactly on a pixel-centre line
            x = left + (np.floor(rng.uniform(0, 50)) + 0.5) * gsd_m
        kind = rng.integers(3)
        shapes.append(shapely.box(x, y - h, x + w, y) if kind == 0 else
                      shapely.Polygon([(x, y), (x + w, y - h / 3), (x + w / 4, y - h)]) if kind == 1 else
                      shapely.box(x, y - h, x + w / 20, y))
    geoms = np.array(shapes, dtype=object)
    values = list(range(1, len(geoms) + 1))
    reach = reach_pixel_centres(geoms, grid)
    assert 0 < reach.sum() < len(geoms)  # some are left out
    every_shape = polygon_mappings(geoms, values)
    assert np.array_equal(_burn(burnable(geoms, values, grid), grid), _burn(every_shape, grid))
    for i in np.flatnonzero(~reach):  # each left out burns no pixel alone either
        assert not _burn(polygon_mappings(geoms[i:i + 1], [1]), grid).any()


def test_a_kept_drawing_goes_with_its_feature_set(town):
    import gc

    from geogan.rasterizer import _LAST_DRAWN
    report, bbox, centre = town
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 10.0)
    feats = build_features(report, load_schema(), grid.crs, centre)
    VectorClassSource(feats).classes(grid)
    key = id(feats)
    assert key in _LAST_DRAWN._kept
    del feats
    gc.collect()
    assert key not in _LAST_DRAWN._kept
