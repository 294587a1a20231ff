"""The world OSM describes, drawn right (issue 22): the sea from coastline pieces, other_tags in any vector
format, trees, non-OSM layers with their own class and height fields, buildings on one base on a DEM.

Every extract here is synthetic (tests/osm_factory.py), laid out in metres east/north of a point on the
Baltic coast; class maps are checked at chosen spots and against shapes computed by hand.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine

from geogan.classes import load_schema
from geogan.errors import SourceError
from geogan.features import build_features, coverage_warning
from geogan.grid import grid_from_bbox
from geogan.rasterizer import VectorClassSource, rasterize_classes, rasterize_object_heights
from geogan.sources import SourceOptions, read_sources
from geogan.terrain import DemSource, compose_heights
from osm_factory import offset_lonlat, write_osm

LON0, LAT0 = 10.5, 54.3  # UTM zone 32
UTM = "EPSG:32632"
HALF_M = 200.0  # the grids span -200..200 m both ways


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def lonlat(e, n):
    return offset_lonlat(LON0, LAT0, e, n)


def bbox_lonlat(half_m=HALF_M):
    (w, s), (e, n) = lonlat(-half_m, -half_m), lonlat(half_m, half_m)
    return (w, s, e, n)


def make_grid(gsd_m=2.0, half_m=HALF_M):
    return grid_from_bbox(bbox_lonlat(half_m), "EPSG:4326", UTM, gsd_m)


class Extract:
    """Nodes and ways in metres, written as OSM XML."""

    def __init__(self):
        self.nodes, self.ways = {}, []

    def node(self, e, n, tags=None):
        nid = len(self.nodes) + 1
        self.nodes[nid] = (*lonlat(e, n), tags) if tags else lonlat(e, n)
        return nid

    def way(self, points_m, tags, closed=False):
        refs = [self.node(e, n) for e, n in points_m]
        self.ways.append((len(self.ways) + 1, refs + ([refs[0]] if closed else []), tags))

    def write(self, path, bounds=None):
        return write_osm(path, self.nodes, self.ways, bounds=bounds if bounds is not None else bbox_lonlat(400))


def class_map(paths, grid, schema, options=None, margin_m=20.0):
    report = read_sources(paths, bbox_lonlat(HALF_M + margin_m), options)
    feats = build_features(report, schema, grid.crs, grid.center_lonlat(), options)
    return rasterize_classes(feats, grid), feats


def pixel(grid, e, n):
    x, y = pyproj.Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(*lonlat(e, n))
    col, row = ~grid.transform * (x, y)
    return int(row), int(col)


def name_at(classes, grid, schema, e, n):
    return schema.by_id(int(classes[pixel(grid, e, n)])).name


def pixel_metres(grid):
    """(east, north) metres of every pixel centre of ``grid``."""
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    x, y = grid.transform * (cols + 0.5, rows + 0.5)
    lon, lat = pyproj.Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    dlon, dlat = offset_lonlat(LON0, LAT0, 1.0, 1.0)
    return (lon - LON0) / (dlon - LON0), (lat - LAT0) / (dlat - LAT0)


# ----------------------------------------------------------------------------- the sea


def coastal_town(tmp_path):
    """A coast running west along n = 0 (land south, sea north) in two ways, with a bay dipping to
    n = -100 between e = -60..60, a peninsula e = -150..-120 reaching n = 120, an island in the sea
    (a closed way), a beach over the sea, a building and a park on land."""
    x = Extract()
    x.way([(400, 0), (60, 0), (60, -100), (-60, -100), (-60, 0)], {"natural": "coastline"})
    x.way([(-60, 0), (-120, 0), (-120, 120), (-150, 120), (-150, 0), (-400, 0)], {"natural": "coastline"})
    x.way([(100, 80), (160, 80), (160, 140), (100, 140)], {"natural": "coastline"}, closed=True)
    x.way([(-40, -100), (40, -100), (40, -80), (-40, -80)], {"natural": "beach"}, closed=True)
    x.way([(-30, -150), (30, -150), (30, -130), (-30, -130)], {"building": "yes"}, closed=True)
    x.way([(100, -180), (180, -180), (180, -60), (100, -60)], {"leisure": "park"}, closed=True)
    return x.write(tmp_path / "coast.osm")


SPOTS = {  # (east, north) metres: the class expected there
    (0, 150): "water", (-180, 60): "water", (180, 20): "water",    # open sea
    (0, -50): "water", (50, -20): "water",                          # the bay
    (0, -170): "background", (-180, -60): "background",             # land
    (-135, 60): "background", (-135, 110): "background",            # the peninsula
    (130, 110): "background",                                       # the island
    (130, 160): "water", (80, 110): "water",                        # beside the island
    (0, -90): "bare",                                               # the beach, over the sea
    (0, -140): "building", (140, -120): "grass",
}


def test_coastal_town_sea_on_the_right_of_the_coastline(tmp_path, schema):
    path = coastal_town(tmp_path)
    grid = make_grid()
    classes, feats = class_map([path], grid, schema)
    for (e, n), want in SPOTS.items():
        assert name_at(classes, grid, schema, e, n) == want, (e, n)
    water = schema.by_name("water").id
    # the sea, by hand: north of n = 0, the bay, less the peninsula and the island (a few px at the edges)
    e, n = pixel_metres(grid)
    sea = ((n > 0) | ((np.abs(e) < 60) & (n > -100))) & ~((e > -150) & (e < -120) & (n < 120)) & \
        ~((e > 100) & (e < 160) & (n > 80) & (n < 140)) & ~((np.abs(e) < 40) & (n > -100) & (n < -80))
    assert np.mean((classes == water) == sea) > 0.99


def test_coastal_town_through_the_api_and_as_pbf(tmp_path, schema):
    """The render's own reading path (api.rasterize_array) and a .osm.pbf copy draw the same sea."""
    from geogan.api import rasterize_array
    from osm_factory import to_pbf

    path = coastal_town(tmp_path)
    grid = make_grid()
    want, _ = class_map([path], grid, schema)
    pbf = to_pbf(path, tmp_path / "coast.osm.pbf")
    got, _ = class_map([pbf], grid, schema)
    assert np.array_equal(got, want)
    classes, g = rasterize_array(path, bbox=bbox_lonlat(), crs=UTM, gsd_m=2.0)
    assert name_at(classes, g, schema, 0, 150) == "water" and name_at(classes, g, schema, 0, -50) == "water"
    assert name_at(classes, g, schema, 0, -170) == "background" and name_at(classes, g, schema, 130, 110) == "background"


def test_sea_under_land_features_and_without_sea_rules(tmp_path, schema):
    """The sea is drawn under everything on land (priority 1); a rules file with `class = ""` in [sea]
    draws none."""
    path = coastal_town(tmp_path)
    grid = make_grid()
    _, feats = class_map([path], grid, schema)
    water = schema.by_name("water").id
    assert feats.priorities.min() == 1 and feats.class_ids[0] == water
    rules = tmp_path / "rules.toml"
    from geogan.classes import default_rules_text
    rules.write_text(default_rules_text().replace('[sea]\nclass = "water"', '[sea]\nclass = ""'), encoding="utf-8")
    classes, _ = class_map([path], grid, load_schema(rules))
    assert name_at(classes, grid, schema, 0, 150) == "background"


def test_coast_cut_short_by_the_extract(tmp_path, schema, caplog):
    """An extract whose coastline way stops inside the area (nodes beyond the cut missing): the coast is
    carried on straight to the area's edge, with a warning, and the sea stays on its side."""
    x = Extract()
    x.way([(400, 20), (-90, 20)], {"natural": "coastline"})  # stops at e = -90
    path = x.write(tmp_path / "cut.osm")
    grid = make_grid()
    with caplog.at_level(logging.WARNING, logger="geogan"):
        classes, _ = class_map([path], grid, schema)
    assert "coastline end(s) stop inside the area" in caplog.text
    for e in (-180, -100, 0, 180):
        assert name_at(classes, grid, schema, e, 100) == "water"
        assert name_at(classes, grid, schema, e, -60) == "background"


def wiggly_coast_m(e):
    """A coast n = f(e) that leaves the area through the top and bottom edges several times."""
    return 260.0 * np.sin(e / 25.0) + 30.0 * np.sin(e / 9.0 + 1.0)


def test_clipped_coast_leaving_and_reentering_the_area(tmp_path, schema):
    """A real-looking clipped extract: a meandering coast of three ways (600 nodes), crossing the area's
    top and bottom edges ten times; the sea (south here: the ways run east) matches the
    curve on >= 99 % of the pixels, the rest lying on the curve."""
    e = np.linspace(-600.0, 600.0, 601)
    n = wiggly_coast_m(e)
    x = Extract()
    for part in np.array_split(np.arange(601), 3):
        part = np.r_[part, part[-1] + 1] if part[-1] < 600 else part
        x.way(list(zip(e[part], n[part])), {"natural": "coastline"})
    path = x.write(tmp_path / "meander.osm", bounds=bbox_lonlat(600))
    grid = make_grid()
    classes, _ = class_map([path], grid, schema)
    pe, pn = pixel_metres(grid)
    sea = pn < np.interp(pe, e, n)  # running east, the sea is on the right: south
    crossings = np.count_nonzero(np.diff(np.sign(np.abs(n[np.abs(e) <= HALF_M]) - HALF_M)) != 0)
    assert crossings >= 8
    assert np.mean((classes == schema.by_name("water").id) == sea) > 0.99
