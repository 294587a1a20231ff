import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings, strategies as st

from geogan.features import build_features
from geogan.grid import grid_from_bbox
from geogan.rasterizer import rasterize_classes, rasterize_heights
from geogan.sources import RawLayer, SourceReport


def _report(items):
    geoms = np.array([g for g, _ in items], dtype=object)
    return SourceReport([RawLayer("test", geoms, [t for _, t in items], is_osm=True)])


def _metres_to_deg(lat):
    g = pyproj.Geod(ellps="WGS84")
    _, _, dx = g.inv(0, lat, 1e-3, lat)
    _, _, dy = g.inv(0, lat, 0, lat + 1e-3)
    return 1e-3 / dx, 1e-3 / dy


def _square(lon, lat, size_m):
    kx, ky = _metres_to_deg(lat)
    return shapely.box(lon - size_m / 2 * kx, lat - size_m / 2 * ky, lon + size_m / 2 * kx, lat + size_m / 2 * ky)


def _raster(items, bbox, crs, gsd, schema):
    grid = grid_from_bbox(bbox, "EPSG:4326", crs, gsd)
    feats = build_features(_report(items), schema, grid.crs, grid.center_lonlat())
    return rasterize_classes(feats, grid), rasterize_heights(feats, grid), grid


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:32635", "EPSG:4326"])
def test_polygon_lands_on_the_right_pixels_with_its_ground_area(schema, crs):
    lon, lat = 25.0, 60.0
    kx, ky = _metres_to_deg(lat)
    bbox = (lon - 50 * kx, lat - 50 * ky, lon + 50 * kx, lat + 50 * ky)  # 100 m x 100 m
    classes, heights, grid = _raster([(_square(lon, lat, 20), {"building": "yes", "height": "12"})],
                                     bbox, crs, 0.5, schema)
    # a lon/lat box seen in UTM is rotated by the meridian convergence, so its bounds grow a little
    assert grid.shape_yx == pytest.approx((200, 200), rel=0.04)
    building = classes == schema.by_name("building").id
    # 20 m x 20 m at 0.5 m = 40 x 40 pixels = 1600, in the middle
    assert building.sum() == pytest.approx(1600, rel=0.06)
    rows, cols = np.nonzero(building)
    assert rows.mean() == pytest.approx(grid.height / 2, abs=1.5)
    assert cols.mean() == pytest.approx(grid.width / 2, abs=1.5)
    assert np.all(heights[building] == 12.0) and np.all(heights[~building] == 0.0)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:32635"])
def test_road_width_in_ground_metres_at_60n(schema, crs):
    lon, lat = 25.0, 60.0
    kx, ky = _metres_to_deg(lat)
    road = shapely.LineString([(lon - 80 * kx, lat), (lon + 80 * kx, lat)])
    bbox = (lon - 50 * kx, lat - 30 * ky, lon + 50 * kx, lat + 30 * ky)
    classes, _, grid = _raster([(road, {"highway": "primary"})], bbox, crs, 0.5, schema)
    column = classes[:, grid.width // 2] == schema.by_name("road").id
    assert column.sum() * 0.5 == pytest.approx(10.0, abs=1.0)  # primary = 10 m wide, +-1 px each side


def test_priority_building_over_park_and_bridge_over_river(schema):
    lon, lat = 25.0, 60.0
    kx, ky = _metres_to_deg(lat)
    bbox = (lon - 50 * kx, lat - 50 * ky, lon + 50 * kx, lat + 50 * ky)
    items = [
        (_square(lon, lat, 20), {"building": "yes"}),  # listed first: drawn last anyway
        (_square(lon, lat, 90), {"leisure": "park"}),
        (shapely.LineString([(lon - 60 * kx, lat + 30 * ky), (lon + 60 * kx, lat + 30 * ky)]), {"highway": "residential"}),
        (shapely.LineString([(lon, lat + 60 * ky), (lon, lat - 60 * ky)]), {"waterway": "river"}),
    ]
    classes, _, grid = _raster(items, bbox, "EPSG:32635", 0.5, schema)
    c = grid.height // 2, grid.width // 2
    assert classes[c] == schema.by_name("building").id
    assert classes[c[0], c[1] + 40] == schema.by_name("grass").id
    road_row = int(round(grid.height / 2 - 30 / 0.5))
    assert classes[road_row, c[1]] == schema.by_name("road").id  # road crosses the river on top
    assert classes[road_row + 20, c[1]] == schema.by_name("water").id


def test_broken_rings_are_repaired_or_skipped(schema):
    lon, lat = 25.0, 60.0
    kx, ky = _metres_to_deg(lat)
    bowtie = shapely.Polygon([(lon - 10 * kx, lat - 10 * ky), (lon + 10 * kx, lat + 10 * ky),
                              (lon + 10 * kx, lat - 10 * ky), (lon - 10 * kx, lat + 10 * ky)])
    assert not bowtie.is_valid
    report = _report([(bowtie, {"building": "yes"})])
    grid = grid_from_bbox((lon - 30 * kx, lat - 30 * ky, lon + 30 * kx, lat + 30 * ky), "EPSG:4326", "EPSG:3857", 1)
    feats = build_features(report, schema, grid.crs, grid.center_lonlat())
    assert feats.repaired == 1
    assert (rasterize_classes(feats, grid) == 1).sum() > 50


@settings(max_examples=25, deadline=None)
@given(lat=st.floats(-70, 70), size_m=st.floats(20, 60), crs=st.sampled_from(["EPSG:3857", "EPSG:4326", "UTM"]))
def test_polygon_pixel_area_matches_ground_area_at_any_latitude(schema, lat, size_m, crs):
    lon = 10.0
    if crs == "UTM":
        crs = f"EPSG:{(32600 if lat >= 0 else 32700) + 32}"
    kx, ky = _metres_to_deg(lat)
    half = size_m / 2 + 15
    bbox = (lon - half * kx, lat - half * ky, lon + half * kx, lat + half * ky)
    classes, _, grid = _raster([(_square(lon, lat, size_m), {"building": "yes"})], bbox, crs, 1.0, schema)
    gx, gy = grid.gsd_m_at(grid.height / 2, grid.width / 2)
    area_m2 = (classes == 1).sum() * gx * gy
    assert area_m2 == pytest.approx(size_m ** 2, rel=0.12)


def test_polygon_mappings_split_parts_in_order_and_drop_the_rest():
    """What rasterio burns: each polygon of each geometry in order, holes kept, empties and lines left out,
    and the same pixels as the shapely geometries themselves."""
    import numpy as np
    import shapely
    from rasterio import features as rio_features
    from rasterio.transform import from_origin

    from geogan.rasterizer import polygon_mappings

    holed = shapely.box(0, 0, 10, 10).difference(shapely.box(3, 3, 6, 6))
    multi = shapely.MultiPolygon([shapely.box(12, 0, 14, 2), shapely.box(15, 5, 19, 9)])
    mixed = shapely.GeometryCollection([shapely.LineString([(0, 12), (5, 12)]), shapely.box(1, 14, 4, 19)])
    geoms = np.array([holed, shapely.Polygon(), multi, mixed], dtype=object)
    got = polygon_mappings(geoms, [7, 8, 9, 5])
    assert [v for _, v in got] == [7, 9, 9, 5]
    assert [len(m["coordinates"]) for m, _ in got] == [2, 1, 1, 1]  # the hole is the second ring
    assert all(m["type"] == "Polygon" for m, _ in got)
    assert shapely.equals(shapely.geometry.shape(got[0][0]), holed)
    transform = from_origin(0, 20, 0.5, 0.5)
    ours = rio_features.rasterize(got, out_shape=(40, 40), transform=transform)
    theirs = rio_features.rasterize([(g, v) for g, v in zip(geoms, [7, 8, 9, 5]) if not g.is_empty],
                                    out_shape=(40, 40), transform=transform)
    line_px = rio_features.rasterize([(mixed.geoms[0], 1)], out_shape=(40, 40), transform=transform) > 0
    assert np.array_equal(ours[~line_px], theirs[~line_px]) and (ours > 0).sum() > 300
    assert polygon_mappings(np.array([shapely.Polygon(), shapely.Point(1, 1)], dtype=object), [1, 2]) == []
