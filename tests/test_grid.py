import dataclasses
import math
import pickle

import numpy as np
import pyproj
import pytest
from affine import Affine
from hypothesis import given, settings, strategies as st
from rasterio.crs import CRS as RioCRS

from geogan.errors import GridError
from geogan.grid import Grid, grid_from_bbox, ground_scale, parse_crs


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0])
def test_web_mercator_pixel_size_follows_one_over_cos_lat(lat):
    bbox = (24.0, lat - 0.002, 24.004, lat + 0.002)
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 0.5)
    rx, ry = grid.res_xy
    expected = 0.5 / math.cos(math.radians(lat))
    assert rx == pytest.approx(expected, rel=2e-3)
    assert ry == pytest.approx(expected, rel=2e-3)


def test_scale_factor_at_60n_is_two():
    kx, ky = ground_scale(parse_crs("EPSG:3857"), 24.9, 60.0)
    assert kx == pytest.approx(2.0, rel=1e-3) and ky == pytest.approx(2.0, rel=1e-3)


def test_utm_pixel_is_about_the_gsd():
    grid = grid_from_bbox((24.94, 60.166, 24.95, 60.172), "EPSG:4326", "EPSG:32635", 0.5)
    rx, ry = grid.res_xy
    assert rx == pytest.approx(0.5, rel=2e-3) and ry == pytest.approx(0.5, rel=2e-3)


def test_geographic_output_uses_degrees():
    grid = grid_from_bbox((24.94, 60.166, 24.95, 60.172), "EPSG:4326", "EPSG:4326", 1.0)
    rx, ry = grid.res_xy
    # one metre along a parallel at 60N is ~1/55.8 km of a degree, along a meridian ~1/111.4 km
    assert rx == pytest.approx(1 / 55_800, rel=0.01)
    assert ry == pytest.approx(1 / 111_400, rel=0.01)
    assert grid.gsd_m_at(grid.height / 2, grid.width / 2) == pytest.approx((1.0, 1.0), rel=0.01)


def test_bounds_are_exactly_the_bbox():
    bbox = (2_776_000.0, 8_437_000.0, 2_777_234.5, 8_438_111.1)
    grid = grid_from_bbox(bbox, "EPSG:3857", "EPSG:3857", 0.5)
    assert grid.bounds == pytest.approx(bbox, abs=1e-6)


@pytest.mark.parametrize("bbox,word", [
    ((1, 1, 0, 2), "inverted"), ((1, 1, 1, 2), "zero-area"), ((170, 0, -170, 1), "antimeridian"),
    ((0, 86, 1, 87), "outside"),
])
def test_bad_bboxes(bbox, word):
    with pytest.raises(GridError, match=word):
        grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 1.0)


@pytest.mark.parametrize("gsd", [0, -1, float("nan"), float("inf"), 1e9, "abc"])
def test_bad_gsd(gsd):
    with pytest.raises(GridError, match="GSD"):
        grid_from_bbox((24.0, 60.0, 24.01, 60.01), "EPSG:4326", "EPSG:3857", gsd)


def test_unknown_crs():
    with pytest.raises(GridError, match="unknown CRS"):
        parse_crs("EPSG:999999")


@settings(max_examples=40, deadline=None)
@given(lon=st.floats(-179, 179), lat=st.floats(-80, 80), w=st.floats(50, 5000), h=st.floats(50, 5000),
       gsd=st.floats(0.2, 20))
def test_any_bbox_gives_exact_bounds_and_ground_gsd(lon, lat, w, h, gsd):
    # a bbox w x h ground metres around (lon, lat) in EPSG:3857
    k = 1 / math.cos(math.radians(lat))
    from pyproj import Transformer
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    bbox = (x - w * k / 2, y - h * k / 2, x + w * k / 2, y + h * k / 2)
    grid = grid_from_bbox(bbox, "EPSG:3857", "EPSG:3857", gsd)
    assert grid.bounds == pytest.approx(bbox, rel=1e-12, abs=1e-6)
    gx, gy = grid.gsd_m_at(grid.height / 2, grid.width / 2)
    # rounding to whole pixels changes the size by at most half a pixel over the extent
    assert abs(gx - gsd) <= gsd * (0.5 / max(1, grid.width)) * 1.01 + 1e-3 * gsd + (gsd if grid.width == 1 else 0)


# --- Grid as a value: checked at construction, exact == with a hash that agrees, almost_equal for tolerance

A = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 6_700_000.0)


@pytest.mark.parametrize("crs,transform,shape,words", [
    ("EPSG:32635", A, (-3, 0), "empty"),
    ("EPSG:32635", A, (0, 5), "empty"),
    ("EPSG:32635", A, (3.0, 4), "whole numbers"),
    ("EPSG:32635", A, (True, 4), "whole numbers"),
    ("EPSG:32635", A, (3,), "two whole numbers"),
    ("EPSG:32635", A, None, "two whole numbers"),
    ("EPSG:32635", Affine(0.0, 0.0, 0.0, 0.0, -1.0, 0.0), (3, 4), "north-up"),  # not invertible
    ("EPSG:32635", Affine.rotation(10) * Affine.scale(0.5, -0.5), (3, 4), "north-up"),
    ("EPSG:32635", Affine(0.5, 0.0, 0.0, 0.0, 0.5, 0.0), (3, 4), "north-up"),  # south-up
    ("EPSG:32635", Affine(-0.5, 0.0, 0.0, 0.0, -0.5, 0.0), (3, 4), "north-up"),  # east-west flipped
    ("EPSG:32635", Affine(0.5, 0.0, math.nan, 0.0, -0.5, 0.0), (3, 4), "non-finite"),
    ("EPSG:32635", (0.5, 0.0, 0.0, 0.0, -0.5, 0.0), (3, 4), "affine.Affine"),
    ("EPSG:999999", A, (3, 4), "unknown CRS"),
    ({"not": "a crs"}, A, (3, 4), "unknown CRS"),
    (None, A, (3, 4), "unknown CRS"),
    ("EPSG:4978", A, (3, 4), "not a horizontal 2-D CRS"),  # geocentric
    ("EPSG:5703", A, (3, 4), "not a horizontal 2-D CRS"),  # vertical
])
def test_bad_grids_are_refused_with_one_line(crs, transform, shape, words):
    with pytest.raises(GridError, match=words) as exc:
        Grid(crs, transform, shape)
    assert "\n" not in str(exc.value)


def test_grid_parts_are_normalised():
    grid = Grid("EPSG:32635", A, (np.int64(3), np.int32(4)))
    assert isinstance(grid.crs, pyproj.CRS) and grid.crs.to_epsg() == 32635
    assert grid.shape_yx == (3, 4) and all(type(v) is int for v in grid.shape_yx)
    assert Grid("EPSG:7415", A, (3, 4)).crs.is_compound  # a projected + vertical compound keeps its horizontal part


def test_equal_grids_hash_equal_and_make_a_set_of_one():
    epsg = pyproj.CRS("EPSG:3857")
    from_wkt = pyproj.CRS.from_wkt(epsg.to_wkt())
    assert from_wkt.to_wkt() != epsg.to_wkt()  # equivalent CRSs whose WKT differ
    grids = [Grid(epsg, A, (3, 4)), Grid(from_wkt, A, (3, 4)), Grid(RioCRS.from_epsg(3857), A, (3, 4)),
             Grid("EPSG:3857", Affine(*A[:6]), [3, 4])]
    assert all(g == grids[0] and hash(g) == hash(grids[0]) for g in grids)
    assert len(set(grids)) == 1


def test_eq_is_exact_and_almost_equal_tolerates_rounding():
    grid = Grid("EPSG:32635", A, (3, 4))
    east = math.nextafter(A.c, math.inf)  # one float step (about 1e-10 m) to the east
    near = Grid("EPSG:32635", Affine(A.a, A.b, east, A.d, A.e, A.f), (3, 4))
    assert near != grid and grid.almost_equal(near) and near.almost_equal(grid)
    assert len({grid, near}) == 2
    assert not grid.almost_equal(near, tol=0.0)
    assert not grid.almost_equal(Grid("EPSG:32635", A, (3, 5)))
    assert not grid.almost_equal(Grid("EPSG:32634", A, (3, 4)))
    assert grid != "EPSG:32635" and not grid.almost_equal("EPSG:32635")  # type: ignore[arg-type]


CRSS = ["EPSG:3857", "EPSG:32635", "EPSG:4326", "EPSG:3035"]


@st.composite
def grids(draw):
    res_x, res_y = draw(st.floats(1e-6, 1e4)), draw(st.floats(1e-6, 1e4))
    left, top = draw(st.floats(-1e7, 1e7)), draw(st.floats(-1e7, 1e7))
    shape = (draw(st.integers(1, 100_000)), draw(st.integers(1, 100_000)))
    return Grid(draw(st.sampled_from(CRSS)), Affine(res_x, 0.0, left, 0.0, -res_y, top), shape)


@st.composite
def near_grids(draw, grid):
    """``grid`` or a grid a little off it: the same parts rebuilt, a nudged coefficient, another shape."""
    kind = draw(st.sampled_from(["same", "rebuilt", "nudged", "shape"]))
    if kind == "same":
        return grid
    if kind == "rebuilt":
        return Grid(pyproj.CRS.from_wkt(grid.crs.to_wkt()), Affine(*grid.transform[:6]), tuple(grid.shape_yx))
    if kind == "shape":
        return Grid(grid.crs, grid.transform, (grid.height + 1, grid.width))
    coeffs = list(grid.transform[:6])
    i = draw(st.sampled_from([0, 2, 4, 5]))
    coeffs[i] += draw(st.sampled_from([1e-12, 1e-10, -1e-9, 1e-6])) * (-1 if i == 4 else 1)
    return Grid(grid.crs, Affine(*coeffs), grid.shape_yx)


def _tol(grid, *steps_px):
    """A tolerance for float rounding in ``grid``'s transform after moving it by ``steps_px`` pixels."""
    a, _, c, _, e, f = grid.transform[:6]
    return 1e-12 * max(1.0, abs(c), abs(f), *(abs(a * s) + abs(e * s) for s in steps_px))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), grid=grids())
def test_eq_and_hash_agree(data, grid):
    other = data.draw(near_grids(grid))
    if grid == other:
        assert hash(grid) == hash(other) and len({grid, other}) == 1
        assert grid.almost_equal(other, tol=0.0)
    assert (grid == other) == (other == grid)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), grid=grids(), tol=st.sampled_from([0.0, 1e-12, 1e-9, 1e-6]))
def test_almost_equal_is_reflexive_and_symmetric(data, grid, tol):
    other = data.draw(near_grids(grid))
    assert grid.almost_equal(grid, tol=tol)
    assert grid.almost_equal(other, tol=tol) == other.almost_equal(grid, tol=tol)


@settings(max_examples=100, deadline=None)
@given(grid=grids())
def test_pickle_and_replace_round_trip_exactly(grid):
    for copy in (pickle.loads(pickle.dumps(grid)), dataclasses.replace(grid), grid.window(0, 0, *grid.shape_yx)):
        assert copy == grid and hash(copy) == hash(grid)


@settings(max_examples=150, deadline=None)
@given(grid=grids(), row0=st.integers(-10**6, 10**6), col0=st.integers(-10**6, 10**6),
       height=st.integers(1, 10**5), width=st.integers(1, 10**5))
def test_window_round_trip(grid, row0, col0, height, width):
    win = grid.window(row0, col0, height, width)
    assert win.shape_yx == (height, width) and win.res_xy == grid.res_xy
    assert win.xy(0, 0) == pytest.approx(grid.xy(row0, col0), abs=_tol(grid, row0, col0))
    back = win.window(-row0, -col0, grid.height, grid.width)
    assert back.almost_equal(grid, tol=_tol(grid, row0, col0))


@settings(max_examples=150, deadline=None)
@given(grid=grids(), height=st.integers(1, 10**5), width=st.integers(1, 10**5))
def test_resized_round_trip_keeps_the_bounds(grid, height, width):
    small = grid.resized(height, width)
    tol = _tol(grid, grid.height, grid.width)
    assert small.shape_yx == (height, width)
    assert small.bounds == pytest.approx(grid.bounds, abs=tol)
    assert small.resized(*grid.shape_yx).almost_equal(grid, tol=tol)
