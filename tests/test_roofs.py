"""Known-answer tests for building tops, bottoms and roof shapes (issue #6: heights that mean something).

Footprints are drawn in metres in a projected CRS, turned into lon/lat (as sources deliver
them), classified by ``build_features`` and rasterized onto small grids whose pixel edges line
up with the footprints, so every expected value is a closed formula at the pixel centres.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine

import geogan
from geogan.features import build_features
from geogan.grid import Grid
from geogan.heights import ROOF_SHAPES, building_heights, ground_jacobians, roof_fraction, roof_heights_m
from geogan.rasterizer import rasterize_object_heights
from geogan.sources import RawLayer, SourceReport

from osm_factory import offset_lonlat, write_osm

UTM = pyproj.CRS.from_epsg(32635)       # central meridian 27 E: no meridian convergence there
MERC = pyproj.CRS.from_epsg(3857)
LON0, LAT0 = 27.0, 60.0
GSD = 0.5


def _utm_origin() -> tuple[float, float]:
    x, y = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(LON0, LAT0)
    return math.floor(x), math.floor(y)   # whole metres: pixel edges fall on metre lines


def _report(items):
    geoms = np.array([g for g, _ in items], dtype=object)
    return SourceReport([RawLayer("test", geoms, [dict(t) for _, t in items], is_osm=True)])


def _utm_features(items_m, crs=UTM):
    """Footprints given as shapely polygons in metres east/north of the UTM origin -> FeatureSet in ``crs``."""
    x0, y0 = _utm_origin()
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    items = [(shapely.transform(g, lambda xy: np.column_stack(to_ll.transform(xy[:, 0] + x0, xy[:, 1] + y0))), t)
             for g, t in items_m]
    from geogan.classes import load_schema
    return build_features(_report(items), load_schema(), crs, (LON0, LAT0))


def _utm_grid(half_m: float = 20.0, gsd: float = GSD) -> Grid:
    """A square UTM grid centred on the origin, ``half_m`` metres each way."""
    x0, y0 = _utm_origin()
    n = int(round(2 * half_m / gsd))
    return Grid(UTM, Affine(gsd, 0, x0 - half_m, 0, -gsd, y0 + half_m), (n, n))


def _pixel_centres(transform, shape_yx) -> tuple[np.ndarray, np.ndarray]:
    """CRS coordinates of every pixel centre."""
    rows, cols = np.mgrid[0:shape_yx[0], 0:shape_yx[1]] + 0.5
    t = transform
    return t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f


def _centres_m(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in metres east/north of the UTM origin (UTM grids only)."""
    x0, y0 = _utm_origin()
    xs, ys = _pixel_centres(grid.transform, grid.shape_yx)
    return xs - x0, ys - y0


def _roof_heights(items_m, half_m: float = 20.0):
    """Object heights of footprints (metres around the UTM origin) on a UTM grid of ``half_m`` each way,
    with every pixel centre's position in metres: ``(h, xm, ym)``."""
    grid = _utm_grid(half_m)
    return (rasterize_object_heights(_utm_features(items_m), grid), *_centres_m(grid))


def _box(w_m, h_m, cx=0.0, cy=0.0):
    return shapely.box(cx - w_m / 2, cy - h_m / 2, cx + w_m / 2, cy + h_m / 2)


# ----------------------------------------------------------------------------- tags -> numbers

@pytest.mark.parametrize("tags, top, bottom, roof", [
    ({"building": "yes", "height": "12"}, 12.0, 0.0, 0.0),
    ({"building": "yes", "building:levels": "3"}, 9.0, 0.0, 0.0),
    ({"building": "yes", "building:levels": "3", "roof:levels": "1"}, 12.0, 0.0, 0.0),  # flat roof storey
    ({"building": "yes", "building:levels": "2", "roof:shape": "gabled", "roof:height": "2.5"}, 8.5, 0.0, 2.5),
    ({"building": "yes", "building:levels": "2", "roof:shape": "hipped", "roof:levels": "1"}, 9.0, 0.0, 3.0),
    ({"building": "yes", "height": "10", "roof:shape": "gabled", "roof:height": "4"}, 10.0, 0.0, 4.0),
    # S3DB: building:levels count from the ground, so min_level raises the bottom, not the top
    ({"building:part": "yes", "building:levels": "4", "building:min_level": "2"}, 12.0, 6.0, 0.0),
    ({"building:part": "yes", "height": "20", "min_height": "5"}, 20.0, 5.0, 0.0),
    ({"building": "yes", "building:levels": "3", "min_height": "4"}, 9.0, 4.0, 0.0),
    ({"building": "house"}, 7.0, 0.0, 0.0),
    ({"building": "yes", "height": "40 ft"}, 40 * 0.3048, 0.0, 0.0),
])
def test_tag_forms_give_top_bottom_and_roof(tags, top, bottom, roof):
    b = building_heights(tags)
    assert b.height_m == pytest.approx(top)
    assert b.min_height_m == pytest.approx(bottom)
    assert b.roof_height_m == pytest.approx(roof)
    assert b.warnings == ()


def test_default_roof_height_from_a_30_degree_pitch():
    # levels-based: the roof sits on top of the walls; 5 m half-width at 30 degrees = 2.887 m
    b = building_heights({"building": "yes", "building:levels": "2", "roof:shape": "gabled"}, half_width_m=5.0)
    assert b.roof_height_m == pytest.approx(5.0 * math.tan(math.radians(30)))
    assert b.height_m == pytest.approx(6.0 + 5.0 * math.tan(math.radians(30)))
    # height-based: the roof is inside the height and never taller than the walls under it
    b = building_heights({"building": "yes", "height": "10", "roof:shape": "gabled"}, half_width_m=20.0)
    assert (b.height_m, b.roof_height_m) == (10.0, 5.0)
    # roof:angle sets the pitch
    b = building_heights({"building": "yes", "height": "20", "roof:shape": "hipped", "roof:angle": "45"},
                         half_width_m=4.0)
    assert b.roof_height_m == pytest.approx(4.0)
    # no footprint known: a roof:shape without a roof height stays flat
    assert building_heights({"building": "yes", "height": "10", "roof:shape": "gabled"}).roof_shape == "flat"


@pytest.mark.parametrize("tags", [
    {"building:part": "yes", "height": "10", "min_height": "12"},
    {"building:part": "yes", "height": "10", "min_height": "10"},
    {"building:part": "yes", "building:levels": "2", "building:min_level": "3"},
])
def test_min_height_at_or_above_the_top_is_ignored_with_a_warning(tags):
    b = building_heights(tags)
    assert b.min_height_m == 0.0
    assert b.height_m > 0
    assert len(b.warnings) == 1 and "ignored" in b.warnings[0]


def test_roof_height_taller_than_the_part_is_clamped():
    b = building_heights({"building": "yes", "height": "10", "min_height": "4", "roof:shape": "gabled",
                          "roof:height": "8"})
    assert (b.height_m, b.min_height_m, b.roof_height_m) == (10.0, 4.0, 6.0)
    assert b.warnings and "clamped" in b.warnings[0]


def test_unknown_shape_is_flat_with_one_warning(caplog):
    b = building_heights({"building": "yes", "height": "9", "roof:shape": "zigzag", "roof:height": "3"},
                         half_width_m=5)
    assert (b.roof_shape, b.roof_height_m, b.height_m) == ("flat", 0.0, 9.0)
    items = [(_box(10, 10, cx), {"building": "yes", "height": "9", "roof:shape": "zigzag", "roof:height": "3"})
             for cx in (-12, 0, 12)]
    with caplog.at_level(logging.WARNING, logger="geogan"):
        feats = _utm_features(items)
    lines = [r.getMessage() for r in caplog.records if "roof:shape" in r.getMessage()]
    assert len(lines) == 1 and "zigzag" in lines[0] and "3 building" in lines[0] and "\n" not in lines[0]
    h = rasterize_object_heights(feats, _utm_grid())
    assert set(np.unique(h)) == {0.0, 9.0}


def test_direction_parsing_and_shape_aliases():
    assert building_heights({"building": "yes", "roof:direction": "SE"}).roof_direction_deg == 135.0
    assert building_heights({"building": "yes", "roof:direction": "270°"}).roof_direction_deg == 270.0
    assert math.isnan(building_heights({"building": "yes", "roof:direction": "uphill"}).roof_direction_deg)
    assert building_heights({"building": "yes", "height": "9", "roof:shape": "Half_Hipped", "roof:height": "2"}
                            ).roof_shape == "half-hipped"


# ----------------------------------------------------------------------------- profiles (pure geometry)

def test_every_shape_stays_between_eaves_and_top():
    foot = shapely.Polygon([(0, 0), (14, 0), (14, 6), (8, 6), (8, 11), (0, 11)])  # an L
    xs, ys = np.meshgrid(np.arange(0.25, 14, 0.5), np.arange(0.25, 11, 0.5))
    pts = np.column_stack([xs.ravel(), ys.ravel()])
    pts = pts[shapely.contains_xy(foot, pts[:, 0], pts[:, 1])]
    for shape in ROOF_SHAPES:
        h = roof_heights_m(shape, foot, pts, 10.0, 3.0, direction_deg=200.0)
        assert h.shape == (len(pts),)
        assert h.min() >= 7.0 - 1e-9 and h.max() <= 10.0 + 1e-9, shape
        if shape != "flat":
            assert h.max() - h.min() > 1.0, shape  # a real profile, not a flat top


def test_hipped_l_shape_has_constant_pitch_in_both_wings():
    # wings 6 m and 5 m wide: one pitch everywhere, so the narrower wing's ridge is lower and the
    # roof reaches the top only at the widest point (the junction, the largest inscribed circle)
    foot = shapely.Polygon([(0, 0), (20, 0), (20, 6), (5, 6), (5, 20), (0, 20)])
    pts = np.array([[12.0, 3.0], [2.5, 14.0], [12.0, 0.5]])
    f = roof_fraction("hipped", foot, pts)
    assert f[1] / f[0] == pytest.approx(2.5 / 3.0, rel=1e-6)
    assert f[2] / f[0] == pytest.approx(0.5 / 3.0, rel=1e-6)
    radius = shapely.length(shapely.maximum_inscribed_circle(foot, 1e-4))
    assert f[0] == pytest.approx(3.0 / radius, rel=1e-3) and f[0] < 1.0
    xs, ys = np.meshgrid(np.arange(0.05, 20, 0.1), np.arange(0.05, 20, 0.1))
    grid_pts = np.column_stack([xs.ravel(), ys.ravel()])
    grid_pts = grid_pts[shapely.contains_xy(foot, grid_pts[:, 0], grid_pts[:, 1])]
    assert roof_fraction("hipped", foot, grid_pts).max() == pytest.approx(1.0, abs=0.02)


# ----------------------------------------------------------------------------- rasterized known answers

def test_gabled_rectangle_in_utm():
    # 20 m east-west x 10 m north-south, ridge along x at y = 0, eaves 7 m, ridge 10 m
    h, xm, ym = _roof_heights([(_box(20, 10), {"building": "yes", "height": "10", "roof:shape": "gabled",
                                               "roof:height": "3"})])
    inside = (np.abs(xm) < 10) & (np.abs(ym) < 5)
    assert inside.sum() == 40 * 20
    want = 10.0 - 3.0 * np.abs(ym) / 5.0
    assert np.allclose(h[inside], want[inside], atol=2e-3)
    assert (h[~inside] == 0).all()
    block = h[np.ix_(np.any(inside, axis=1), np.any(inside, axis=0))]
    assert np.array_equal(block, block[::-1])               # symmetric about the ridge
    assert (block == block[:, :1]).all()                     # constant along the ridge
    assert block.max() == pytest.approx(10.0 - 3.0 * 0.25 / 5.0, abs=2e-3)   # pixel centres 0.25 m off the ridge
    assert block.min() == pytest.approx(7.0 + 3.0 * 0.25 / 5.0, abs=2e-3)    # and 0.25 m inside the eaves
    slope = np.diff(block[: block.shape[0] // 2, 0]) / GSD    # ground metres: 3 m over 5 m
    assert np.allclose(slope, 0.6, atol=1e-2)


def test_gabled_across_turns_the_ridge():
    h, xm, ym = _roof_heights([(_box(20, 10), {"building": "yes", "height": "10", "roof:shape": "gabled",
                                               "roof:height": "3", "roof:orientation": "across"})])
    inside = (np.abs(xm) < 10) & (np.abs(ym) < 5)
    assert np.allclose(h[inside], (10.0 - 3.0 * np.abs(xm) / 10.0)[inside], atol=2e-3)


@pytest.mark.parametrize("shape", ["pyramidal", "hipped"])
def test_square_pyramid_peaks_at_the_centre(shape):
    h, xm, ym = _roof_heights([(_box(12, 12), {"building": "yes", "height": "9", "roof:shape": shape,
                                               "roof:height": "3"})], 10.0)
    inside = (np.abs(xm) < 6) & (np.abs(ym) < 6)
    want = 6.0 + 3.0 * (1.0 - np.maximum(np.abs(xm), np.abs(ym)) / 6.0)
    assert np.allclose(h[inside], want[inside], atol=2e-3)
    peak = np.unravel_index(np.argmax(h), h.shape)
    assert abs(xm[peak]) == 0.25 and abs(ym[peak]) == 0.25
    assert h.max() == pytest.approx(9.0 - 3.0 * 0.25 / 6.0, abs=2e-3)


def test_hipped_rectangle_has_a_ridge_and_hips():
    h, xm, ym = _roof_heights([(_box(20, 10), {"building": "yes", "height": "10", "roof:shape": "hipped",
                                               "roof:height": "3"})])
    inside = (np.abs(xm) < 10) & (np.abs(ym) < 5)
    dist = np.minimum(10 - np.abs(xm), 5 - np.abs(ym))
    assert np.allclose(h[inside], (7.0 + 3.0 * np.minimum(dist / 5.0, 1.0))[inside], atol=5e-3)


def test_dome_has_a_circular_profile():
    circle = shapely.Point(0, 0).buffer(8.0, quad_segs=32)
    dome = {"building": "yes", "height": "12", "roof:shape": "dome", "roof:height": "8"}
    h, xm, ym = _roof_heights([(circle, dome)], 10.0)
    r = np.hypot(xm, ym)
    core = r < 7.5
    want = 4.0 + 8.0 * np.sqrt(np.clip(1 - (r / 8.0) ** 2, 0, 1))
    assert np.abs(h[core] - want[core]).max() < 0.1
    assert h.max() == pytest.approx(4.0 + 8.0 * math.sqrt(1 - (0.25 * math.sqrt(2) / 8) ** 2), abs=0.02)


@pytest.mark.parametrize("direction, axis, sign", [("90", "x", -1), ("E", "x", -1), ("270", "x", 1),
                                                   ("S", "y", 1), ("0", "y", -1)])
def test_skillion_slopes_down_towards_roof_direction(direction, axis, sign):
    h, xm, ym = _roof_heights([(_box(10, 10), {"building": "yes", "height": "8", "roof:shape": "skillion",
                                               "roof:height": "2", "roof:direction": direction})], 8.0)
    inside = (np.abs(xm) < 5) & (np.abs(ym) < 5)
    s = xm if axis == "x" else ym
    want = 7.0 + 2.0 * sign * s / 10.0   # 8 m at the back, eaves 6 m at the front
    assert np.allclose(h[inside], want[inside], atol=2e-3)


def test_gabled_and_skillion_in_web_mercator_at_60n_use_ground_metres():
    # the same footprints in EPSG:3857, where one projected metre is ~0.5 ground metres at 60 N
    items = [(_box(20, 10, 0, 12), {"building": "yes", "height": "10", "roof:shape": "gabled", "roof:height": "3"}),
             (_box(10, 10, 0, -12), {"building": "yes", "height": "8", "roof:shape": "skillion",
                                     "roof:height": "2", "roof:direction": "90"})]
    feats = _utm_features(items, crs=MERC)
    jac = feats.buildings.ground_jacobians[0]
    assert jac[0, 0] == pytest.approx(2.0, rel=0.01) and abs(jac[0, 1]) < 1e-6
    x0, y0 = _utm_origin()
    cx, cy = pyproj.Transformer.from_crs(UTM, MERC, always_xy=True).transform(x0, y0)
    px = GSD * jac[0, 0]                                   # 0.5 ground metres per pixel
    grid = Grid(MERC, Affine(px, 0, cx - 40 * px, 0, -px, cy + 60 * px), (120, 80))
    h = rasterize_object_heights(feats, grid)
    # expected heights at every pixel centre, from its position in ground metres (exact, via UTM)
    mx, my = _pixel_centres(grid.transform, grid.shape_yx)
    ux, uy = pyproj.Transformer.from_crs(MERC, UTM, always_xy=True).transform(mx, my)
    xm, ym = ux - x0, uy - y0
    gabled = (np.abs(xm) < 9.9) & (np.abs(ym - 12) < 4.9)
    skillion = (np.abs(xm) < 4.9) & (np.abs(ym + 12) < 4.9)
    assert gabled.sum() == pytest.approx(40 * 20, rel=0.05)   # 20 m x 10 m at 0.5 ground metres
    assert np.abs(h[gabled] - (10.0 - 3.0 * np.abs(ym - 12) / 5.0)[gabled]).max() < 0.01
    assert np.abs(h[skillion] - (7.0 - 2.0 * xm / 10.0)[skillion]).max() < 0.01
    # ground slope of the gable between neighbouring rows: 3 m over 5 ground metres
    col = h[:, 40][gabled[:, 40]]
    half = col[: len(col) // 2]
    assert np.allclose(np.diff(half) / GSD, 0.6, atol=0.02)


def test_parts_replace_the_outline_and_overlapping_parts_take_the_maximum():
    items = [
        (_box(20, 20), {"building": "yes", "height": "10"}),                        # outline
        (_box(10, 20, -5, 0), {"building:part": "yes", "height": "6"}),              # west half, lower
        (_box(4, 4, -5, 0), {"building:part": "yes", "height": "30"}),               # tower inside it
        (_box(4, 4, 5, 5), {"building:part": "yes", "height": "14", "min_height": "8"}),  # overhang on the east
    ]
    feats = _utm_features(items)
    grid = _utm_grid(12.0)
    top, bottom = rasterize_object_heights(feats, grid, with_bottom=True)
    xm, ym = _centres_m(grid)
    tower = (np.abs(xm + 5) < 2) & (np.abs(ym) < 2)
    west = (xm > -10) & (xm < 0) & (np.abs(ym) < 10) & ~tower
    over = (np.abs(xm - 5) < 2) & (np.abs(ym - 5) < 2)
    east = (xm > 0) & (xm < 10) & (np.abs(ym) < 10) & ~over
    assert (top[tower] == 30).all() and (top[west] == 6).all()
    assert (top[east] == 10).all() and (top[over] == 14).all()
    assert (bottom[over] == 8).all() and (bottom[~over] == 0).all()
    assert np.array_equal(top, rasterize_object_heights(feats, grid))
    assert feats.min_heights_m.tolist().count(8.0) == 1


def test_strips_agree_with_the_whole_grid():
    items = [(_box(14, 9, -4, 3), {"building": "yes", "height": "11", "roof:shape": "hipped", "roof:height": "4"}),
             (shapely.Point(6, -6).buffer(5), {"building": "yes", "height": "9", "roof:shape": "onion"})]
    feats = _utm_features(items)
    grid = _utm_grid(14.0)
    whole = rasterize_object_heights(feats, grid)
    strips = np.concatenate([rasterize_object_heights(feats, grid.window(r, 0, 7, grid.width))
                             for r in range(0, grid.height, 7)])
    assert np.array_equal(whole, strips[:grid.height])
    assert whole.max() > 9 and (whole > 0).sum() > 300


def test_thousands_of_shaped_roofs_are_fast():
    rng = np.random.default_rng(0)
    shapes = ["gabled", "hipped", "pyramidal", "skillion", "dome"]
    items = []
    for i in range(40):
        for j in range(40):
            w, d = rng.uniform(6, 14), rng.uniform(6, 10)
            poly = shapely.affinity.rotate(_box(w, d, -300 + 15 * i, -300 + 15 * j), rng.uniform(0, 90))
            items.append((poly, {"building": "yes", "building:levels": str(rng.integers(1, 5)),
                                 "roof:shape": shapes[(i + j) % len(shapes)]}))
    feats = _utm_features(items)
    grid = _utm_grid(310.0)
    t0 = time.process_time()  # CPU time: the test machines share their cores with other jobs
    h = rasterize_object_heights(feats, grid)
    elapsed = time.process_time() - t0
    assert (h > 0).mean() > 0.2
    assert len(np.unique(h)) > 1000                        # real profiles, not flat tops
    assert elapsed < 30.0, f"{len(items)} roofs took {elapsed:.1f} s of CPU (about 3 s on an idle core)"


def test_ground_jacobians_know_meridian_convergence():
    # 3 degrees east of the UTM central meridian at 60 N, grid north is ~2.6 degrees off true north
    jac = ground_jacobians(np.array([30.0]), np.array([60.0]), UTM)[0]
    angle = math.degrees(math.atan2(jac[0, 1], jac[1, 1]))
    assert angle == pytest.approx(-3.0 * math.sin(math.radians(60)), abs=0.05)
    assert np.hypot(jac[0, 0], jac[1, 0]) == pytest.approx(1.0, abs=0.002)


# ----------------------------------------------------------------------------- through the public pipeline

def test_render_writes_roofs_and_parts_into_height_tif(tmp_path, tiny_model):
    lon, lat = LON0, LAT0
    nodes: dict[int, tuple] = {}
    ways, relations = [], []

    def ring(cx, cy, w, h):
        refs = []
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
            nid = len(nodes) + 1
            nodes[nid] = offset_lonlat(lon, lat, cx + dx, cy + dy)
            refs.append(nid)
        return refs + [refs[0]]

    forms = {
        "height": (-30, 15, {"building": "yes", "height": "12"}),
        "levels": (0, 15, {"building": "yes", "building:levels": "4"}),
        "levels_roof": (30, 15, {"building": "yes", "building:levels": "2", "roof:levels": "1"}),
        "gabled": (-30, -15, {"building": "yes", "height": "10", "roof:shape": "gabled", "roof:height": "3"}),
        "pyramidal": (0, -15, {"building": "yes", "height": "9", "roof:shape": "pyramidal", "roof:height": "3"}),
        "unknown": (30, -15, {"building": "yes", "height": "8", "roof:shape": "zigzag", "roof:height": "3"}),
    }
    for wid, (cx, cy, tags) in enumerate(forms.values(), start=1):
        ways.append((wid, ring(cx, cy, 16, 10), tags))
    # building:parts floating above ground: one as a multipolygon relation, one as a closed way (which
    # GDAL's OSM driver reads as a line, its osmconf.ini not listing building:part; features.py closes it)
    part_way = len(ways) + 1
    ways.append((part_way, ring(0, 0, 8, 6), {}))
    relations.append((1, [("way", part_way, "outer")], {"type": "multipolygon", "building:part": "yes",
                                                          "height": "15", "min_height": "6"}))
    ways.append((part_way + 1, ring(-30, 0, 8, 6), {"building:part": "yes", "building:levels": "5",
                                                     "building:min_level": "2"}))
    osm = write_osm(tmp_path / "roofs.osm", nodes, ways, relations)
    sw, ne = offset_lonlat(lon, lat, -45, -25), offset_lonlat(lon, lat, 45, 25)
    res = geogan.render(osm=osm, bbox=(*sw, *ne), crs="EPSG:32635", gsd_m=0.5, out_dir=tmp_path / "out",
                        model=str(tiny_model), tile_px=128, overlap_px=32, seed=0)
    with rasterio.open(res.height) as ds:
        height, transform = ds.read(1), ds.transform
    classes = rasterio.open(res.classes).read(1)
    xs, ys = _pixel_centres(transform, height.shape)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True)
    ox, oy = to_utm.transform(lon, lat)
    xm, ym = xs - ox, ys - oy

    def px(cx, cy, w=16, h=10, margin=0.6):
        return (np.abs(xm - cx) < w / 2 - margin) & (np.abs(ym - cy) < h / 2 - margin)

    for name, want in (("height", 12.0), ("levels", 12.0), ("levels_roof", 9.0), ("unknown", 8.0)):
        cx, cy, _ = forms[name]
        sel = px(cx, cy)
        assert sel.sum() > 300 and (classes[sel] == 1).all()
        assert np.allclose(height[sel], want, atol=1e-3), name
    cx, cy, _ = forms["gabled"]
    sel = px(cx, cy)
    assert np.allclose(height[sel], (10.0 - 3.0 * np.abs(ym - cy) / 5.0)[sel], atol=0.05)
    cx, cy, _ = forms["pyramidal"]
    sel = px(cx, cy, margin=1.0)
    assert height[sel].max() == pytest.approx(9.0, abs=0.2)
    assert height[sel].min() < 7.0
    for cx in (0, -30):
        part = px(cx, 0, 8, 6)
        assert part.sum() > 100 and (classes[part] == 1).all() and np.allclose(height[part], 15.0), cx
    assert (height[classes == 0] == 0).all()
