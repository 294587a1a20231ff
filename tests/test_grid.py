import math

import pytest
from hypothesis import given, settings, strategies as st

from geogan.errors import GridError
from geogan.grid import grid_from_bbox, ground_scale, parse_crs


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
