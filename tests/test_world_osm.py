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


# ----------------------------------------------------------------------------- other_tags in any format


def street_extract(tmp_path):
    """Tags that GDAL's OSM driver keeps only in other_tags: tunnels, covered ways, pedestrian areas,
    bridges' layers, trees, tree rows, building heights and parts, lanes."""
    x = Extract()
    x.way([(-190, 0), (190, 0)], {"highway": "primary", "lanes": "4"})
    x.way([(0, -190), (0, -20)], {"highway": "residential", "tunnel": "yes", "layer": "-1"})
    x.way([(-190, 60), (190, 60)], {"highway": "footway", "covered": "yes"})
    x.way([(-190, -60), (190, -60)], {"railway": "rail", "tunnel": "yes"})
    x.way([(40, 100), (140, 100), (140, 170), (40, 170)], {"highway": "pedestrian", "area": "yes"}, closed=True)
    x.way([(-160, 100), (-60, 100), (-60, 170), (-160, 170)], {"landuse": "grass"}, closed=True)
    x.way([(-150, 20), (150, 20)], {"natural": "tree_row", "diameter_crown": "8"})
    x.way([(-150, -120), (-100, -120), (-100, -80), (-150, -80)], {"building": "yes", "height": "21"},
          closed=True)
    x.way([(-140, -115), (-120, -115), (-120, -95), (-140, -95)], {"building:part": "yes", "height": "40"},
          closed=True)
    x.way([(60, -150), (160, -150), (160, -90), (60, -90)], {"amenity": "parking"}, closed=True)
    x.way([(20, -180), (20, 190)], {"waterway": "canal", "bridge": "no"})
    for i, e in enumerate(range(-180, 181, 40)):
        x.node(e, -40, {"natural": "tree", "circumference": f"{1.0 + 0.1 * i:.1f}", "height": str(8 + i)})
    return x.write(tmp_path / "streets.osm")


def osm_as(osm_path, out_dir, driver, suffix):
    """What ogr2ogr writes from an OSM file, in-process: every layer of the OSM driver, as GDAL reads it
    (other_tags and all), into a GeoPackage (one file) or GeoJSON (one file per layer)."""
    written = []
    for layer in ("points", "lines", "multilinestrings", "multipolygons", "other_relations"):
        meta, _, wkb, fields = pyogrio.raw.read(osm_path, layer=layer)
        if not len(wkb):
            continue
        path = out_dir / (f"streets{suffix}" if driver == "GPKG" else f"{layer}{suffix}")
        pyogrio.raw.write(path, wkb, fields, meta["fields"], layer=layer, driver=driver, crs=meta["crs"],
                          geometry_type=meta["geometry_type"], append=driver == "GPKG" and path.exists())
        written.append(path)
    return sorted(set(written))


@pytest.mark.parametrize("driver, suffix", [("GPKG", ".gpkg"), ("GeoJSON", ".geojson")])
def test_a_converted_extract_draws_what_the_osm_draws(tmp_path, schema, driver, suffix):
    osm = street_extract(tmp_path)
    copies = osm_as(osm, tmp_path, driver, suffix)
    grid = make_grid(gsd_m=1.0)
    want, feats = class_map([osm], grid, schema)
    got, _ = class_map(copies, grid, schema)
    heights_osm = rasterize_object_heights(feats, grid)
    heights_copy = rasterize_object_heights(class_map(copies, grid, schema)[1], grid)
    assert name_at(want, grid, schema, 0, -100) == "background"  # the tunnel is not drawn
    assert name_at(want, grid, schema, 90, 130) == "path"  # the pedestrian area
    assert np.mean(got == want) >= 0.99
    assert np.array_equal(got, want) and np.array_equal(heights_copy, heights_osm)


# ----------------------------------------------------------------------------- trees


def tree_extract(tmp_path):
    x = Extract()
    x.node(-100, 100, {"natural": "tree", "diameter_crown": "12", "height": "20"})
    x.node(0, 100, {"natural": "tree", "circumference": "1.57"})  # a 0.5 m trunk: a 10 m crown
    x.node(100, 100, {"natural": "tree"})  # the defaults: 6 m across, 10 m tall
    x.way([(-150, -50), (150, -50)], {"natural": "tree_row", "diameter_crown": "8", "height": "12"})
    x.way([(60, -150), (60, 50)], {"highway": "residential"})  # under the row: the road stays on top
    x.way([(-190, -50), (190, -50)], {"highway": "footway"})  # the crowns cover it
    return x.write(tmp_path / "trees.osm")


def test_trees_and_tree_rows_drawn_as_crowns(tmp_path, schema):
    grid = make_grid(gsd_m=0.5, half_m=HALF_M)
    classes, feats = class_map([tree_extract(tmp_path)], grid, schema)
    woodland = classes == schema.by_name("woodland").id
    e, n = pixel_metres(grid)
    for (te, tn), crown_m in {(-100, 100): 12.0, (0, 100): 10.0, (100, 100): 6.0}.items():
        near = np.hypot(e - te, n - tn) < crown_m  # a crown and a ring around it
        area_m2 = np.count_nonzero(woodland & near) * 0.25
        assert area_m2 == pytest.approx(math.pi * (crown_m / 2) ** 2, rel=0.08), (te, tn)
    row = (np.abs(n + 50) < 10) & (np.abs(e) < 140) & (np.abs(e - 60) > 10)
    assert np.count_nonzero(woodland & row) * 0.25 / 260 == pytest.approx(8.0, rel=0.05)  # 8 m wide
    assert name_at(classes, grid, schema, 60, -50) == "road"
    assert name_at(classes, grid, schema, -100, -50) == "woodland"  # over the footway


def test_tree_heights_in_the_surface(tmp_path, schema):
    grid = make_grid(gsd_m=0.5, half_m=HALF_M)
    classes, feats = class_map([tree_extract(tmp_path)], grid, schema)
    top = rasterize_object_heights(feats, grid)
    e, n = pixel_metres(grid)
    for (te, tn), (height_m, crown_m) in {(-100, 100): (20, 12), (0, 100): (10, 10), (100, 100): (10, 6)}.items():
        crown = (np.hypot(e - te, n - tn) < crown_m / 2 - 0.5)
        assert top[crown].max() == pytest.approx(height_m, abs=0.3)
        assert top[crown].min() >= height_m - min(crown_m / 2, height_m / 2) - 1e-3  # rounded, not a cylinder
        assert top[crown].min() < height_m - 1.0
    row = (np.abs(n + 50) < 3) & (np.abs(e + 100) < 30)
    assert top[row].max() == pytest.approx(12, abs=0.1)
    # the surface: a tree is as tall as it is, not the woodland canopy's 15 m +- 30 %
    surface = compose_heights(np.zeros(grid.shape_yx, np.float32), top, classes, schema, seed=1, gsd_m=0.5)
    crown = np.hypot(e - 100, n - 100) < 2.5
    assert surface[crown].max() == pytest.approx(10, abs=0.3)


# ----------------------------------------------------------------------------- layers that are not OSM


def cadastre(tmp_path, n_buildings=84, fields=("HEIGHT", "hoehe", "FLOORS"), seed=4):
    """A surveyed building layer in UTM: squares with measured heights, no `building` field."""
    rng = np.random.default_rng(seed)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    cx, cy = to_utm.transform(LON0, LAT0)
    grid_xy = [(e, n) for e in range(-170, 171, 40) for n in range(-170, 171, 40)][:n_buildings]
    half = rng.uniform(5, 12, len(grid_xy))
    geoms = [shapely.box(cx + e - h, cy + n - h, cx + e + h, cy + n + h) for (e, n), h in zip(grid_xy, half)]
    heights = np.round(rng.uniform(3, 45, len(geoms)), 2)
    columns = {"HEIGHT": heights, "hoehe": np.round(heights * 0.9, 1), "FLOORS": rng.integers(1, 12, len(geoms)),
               "NAME": np.array([f"b{i}" for i in range(len(geoms))], dtype=object)}
    names = [f for f in (*fields, "NAME")]
    path = tmp_path / "cadastre.gpkg"
    pyogrio.raw.write(path, shapely.to_wkb(np.array(geoms, dtype=object)), [columns[f] for f in names], names,
                      layer="buildings", driver="GPKG", crs=UTM, geometry_type="Polygon")
    return path, geoms, columns


def heights_at(grid, feats, geoms):
    """The object height at each building's centre pixel."""
    top = rasterize_object_heights(feats, grid)
    out = []
    for g in geoms:
        col, row = ~grid.transform * (g.centroid.x, g.centroid.y)
        out.append(top[int(row), int(col)])
    return np.array(out)


def test_measured_heights_with_class_and_height_field(tmp_path, schema, caplog):
    path, geoms, columns = cadastre(tmp_path)
    grid = make_grid(gsd_m=1.0)
    options = SourceOptions(class_name="building", height_field="HEIGHT")
    with caplog.at_level(logging.INFO, logger="geogan"):
        classes, feats = class_map([path], grid, schema, options)
    assert feats.counts_by_class == {schema.by_name("building").id: 81}
    got = heights_at(grid, feats, geoms)
    assert np.mean(np.abs(got - columns["HEIGHT"]) <= 1.0) >= 0.9
    assert np.allclose(got, columns["HEIGHT"], atol=0.01)  # exact, in fact
    assert "building heights from field 'HEIGHT'" in caplog.text
    assert "'hoehe' look like heights but are not used" in caplog.text


def test_height_field_found_in_any_letter_case(tmp_path, schema, caplog):
    path, geoms, columns = cadastre(tmp_path)
    grid = make_grid(gsd_m=1.0)
    with caplog.at_level(logging.INFO, logger="geogan"):
        _, feats = class_map([path], grid, schema, SourceOptions(class_name="building"))
    assert np.allclose(heights_at(grid, feats, geoms), columns["HEIGHT"], atol=0.01)
    assert "building heights from field 'HEIGHT'" in caplog.text


def test_levels_field_and_unused_height_like_fields(tmp_path, schema, caplog):
    path, geoms, columns = cadastre(tmp_path, fields=("hoehe", "FLOORS"))
    grid = make_grid(gsd_m=1.0)
    with caplog.at_level(logging.INFO, logger="geogan"):
        _, feats = class_map([path], grid, schema, SourceOptions(class_name="building"))
    assert np.allclose(heights_at(grid, feats, geoms), 8.0)  # no height field: the default
    assert "no height field" in caplog.text and "field(s) 'hoehe' look like heights" in caplog.text
    _, feats = class_map([path], grid, schema, SourceOptions(class_name="building", levels_field="FLOORS"))
    assert np.allclose(heights_at(grid, feats, geoms), columns["FLOORS"] * 3.0)


def test_features_read_but_none_classified_is_said_so(tmp_path, schema):
    path, _, _ = cadastre(tmp_path)
    grid = make_grid(gsd_m=1.0)
    _, feats = class_map([path], grid, schema)  # no building field, no --class: nothing drawn
    msg = coverage_warning(feats)
    assert msg.startswith("81 features read, none classified: pass --class NAME or --class-field FIELD")
    assert "no mapped features" not in msg
    empty = Extract()
    empty.node(0, 0, {"amenity": "bench"})
    _, feats = class_map([empty.write(tmp_path / "bench.osm")], grid, schema)
    assert coverage_warning(feats).startswith("1 features read, none of them mapped by the class rules")
    assert coverage_warning(class_map([path], grid, schema, SourceOptions(class_name="building"))[1]) is None


def test_bad_source_options_are_one_line_errors(tmp_path, schema):
    from geogan.errors import GeoganError

    path, _, _ = cadastre(tmp_path)
    grid = make_grid(gsd_m=1.0)
    with pytest.raises(SourceError, match="no layer has values in the field 'HIGHT' given to --height-field; "
                                          "the fields are: .*HEIGHT"):
        class_map([path], grid, schema, SourceOptions(class_name="building", height_field="HIGHT"))
    with pytest.raises(SourceError, match="not both"):
        SourceOptions(class_name="building", class_field="kind")
    with pytest.raises(GeoganError, match="unknown class 'house'"):
        class_map([path], grid, schema, SourceOptions(class_name="house"))


# ----------------------------------------------------------------------------- one base per building


def sloping_dem(tmp_path, slope_e=0.2, slope_n=0.1, res_m=2.0, half_m=300.0):
    """A plane rising 20 % to the east and 10 % to the north, in UTM, as a GeoTIFF."""
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    cx, cy = to_utm.transform(LON0, LAT0)
    n = int(2 * half_m / res_m)
    transform = Affine(res_m, 0, cx - half_m, 0, -res_m, cy + half_m)
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    x, y = transform * (cols, rows)
    z = (50.0 + slope_e * (x - cx) + slope_n * (y - cy)).astype(np.float32)
    path = tmp_path / "slope.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=UTM,
                       transform=transform, nodata=-9999.0) as ds:
        ds.write(z, 1)
    return path, lambda xx, yy: 50.0 + slope_e * (np.asarray(xx) - cx) + slope_n * (np.asarray(yy) - cy)


def slope_town(tmp_path):
    x = Extract()
    x.way([(-60, -20), (-20, -20), (-20, 20), (-60, 20)], {"building": "yes", "height": "12"}, closed=True)
    x.way([(20, -15), (80, -15), (80, 15), (20, 15)],
          {"building": "house", "height": "12", "roof:shape": "gabled", "roof:height": "4"}, closed=True)
    x.node(0, 60, {"natural": "tree", "height": "10", "diameter_crown": "10"})
    return x.write(tmp_path / "slope.osm")


def surface_on_dem(path_osm, dem_path, grid, schema, standing=True):
    _, feats = class_map([path_osm], grid, schema)
    with DemSource(dem_path, reference_grid=grid) as dem:
        source = VectorClassSource(feats)
        source = source.standing_on(dem) if standing else source
        terrain = dem.read(grid)
        top, base = source.object_layers(grid)
        classes = source.classes(grid)
        return compose_heights(terrain, top, classes, schema, seed=1, gsd_m=grid.res_xy[0], base_m=base), \
            terrain, source, classes


def footprint_px(grid, e0, n0, e1, n1, inset_m=1.5):
    e, n = pixel_metres(grid)
    return (e > e0 + inset_m) & (e < e1 - inset_m) & (n > n0 + inset_m) & (n < n1 - inset_m)


def test_flat_roof_stays_flat_on_a_sloping_dem(tmp_path, schema):
    dem_path, plane = sloping_dem(tmp_path)
    grid = make_grid(gsd_m=1.0, half_m=100.0)
    surface, terrain, source, _ = surface_on_dem(slope_town(tmp_path), dem_path, grid, schema)
    roof = footprint_px(grid, -60, -20, -20, 20)
    assert np.ptp(surface[roof]) <= 0.05
    # the base is the lowest ground under the outline: its south-west corner
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    lowest = plane(*to_utm.transform(*lonlat(-60, -20)))
    assert surface[roof].mean() == pytest.approx(lowest + 12.0, abs=0.05)
    # never higher over the ground than the building's height, and still above the ground uphill
    assert (surface[roof] <= terrain[roof] + 12.0 + 1e-3).all() and (surface[roof] > terrain[roof]).all()
    # before: the roof tilted with the terrain (12 m over this 40 m building on a 20 % / 10 % slope)
    tilted, *_ = surface_on_dem(slope_town(tmp_path), dem_path, grid, schema, standing=False)
    assert np.ptp(tilted[roof]) > 10.0


def test_gabled_roof_keeps_its_ridge_above_the_base(tmp_path, schema):
    dem_path, plane = sloping_dem(tmp_path)
    grid = make_grid(gsd_m=0.5, half_m=100.0)
    surface, terrain, source, _ = surface_on_dem(slope_town(tmp_path), dem_path, grid, schema)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    base = plane(*to_utm.transform(*lonlat(20, -15)))
    roof = footprint_px(grid, 20, -15, 80, 15, inset_m=0.5)
    assert surface[roof].max() == pytest.approx(base + 12.0, abs=0.1)  # the ridge
    assert surface[roof].min() == pytest.approx(base + 8.0, abs=0.35)  # the eaves
    full = roof.sum(axis=0) >= roof.sum(axis=0).max() - 1  # columns across the whole roof
    ridge = np.where(roof, surface, -np.inf).max(axis=0)[full]  # the highest pixel of each
    assert full.sum() > 100 and np.ptp(ridge) <= 0.1  # level along the slope (12 m of it under the ridge)


def test_bases_do_not_depend_on_the_strip_and_trees_follow_the_terrain(tmp_path, schema):
    dem_path, _ = sloping_dem(tmp_path)
    grid = make_grid(gsd_m=1.0, half_m=100.0)
    surface, terrain, source, classes = surface_on_dem(slope_town(tmp_path), dem_path, grid, schema)
    with DemSource(dem_path, reference_grid=grid) as dem:
        strips = []
        for r0 in range(0, grid.height, 37):  # strips cutting through both buildings
            g = grid.window(r0, 0, min(37, grid.height - r0), grid.width)
            top, base = source.object_layers(g)
            strips.append(compose_heights(dem.read(g), top, source.classes(g), schema, seed=1,
                                          gsd_m=grid.res_xy[0], base_m=base))
    assert np.abs(np.vstack(strips) - surface).max() < 1e-3
    tree = footprint_px(grid, -3, 57, 3, 63, inset_m=0)
    trees = source.features.buildings.trees
    buildings = ~trees & np.isfinite(source.features.heights_m)
    assert trees.sum() == 1 and np.isnan(source.bases_m[trees]).all() and np.isfinite(source.bases_m[buildings]).all()
    assert np.ptp(surface[tree] - terrain[tree]) < 3.5  # a crown on the slope, rounded, not levelled


def test_dem_sample_is_bilinear_between_pixel_centres(tmp_path):
    dem_path, plane = sloping_dem(tmp_path)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    cx, cy = to_utm.transform(LON0, LAT0)
    rng = np.random.default_rng(1)
    x, y = cx + rng.uniform(-290, 290, 500), cy + rng.uniform(-290, 290, 500)
    with DemSource(dem_path) as dem:
        z = dem.sample(x, y, UTM)
        far = dem.sample(np.array([cx + 5000]), np.array([cy]), UTM)
        lonlat_z = dem.sample(*np.array(pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
                                        .transform(x, y)), "EPSG:4326")
    assert np.allclose(z, plane(x, y), atol=1e-3) and np.isnan(far).all()
    assert np.allclose(lonlat_z, z, atol=1e-6)


@pytest.mark.parametrize("old, new, msg", [
    ('[sea]\nclass = "water"', '[sea]\nclass = "ocean"', r"\[sea\] class 'ocean' is not one of the schema classes"),
    ('[sea]\nclass = "water"\npriority = 1', '[sea]\nclass = "water"\npriority = "low"',
     r"\[sea\] priority must be a whole number"),
    ('crown = true\npriority = 62\n', 'crown = true\npriority = "high"\n', "priority must be a whole number"),
    ('crown = true\n', 'crown = "yes"\n', "crown must be true or false"),
    ('crown_m = 6.0', 'crown_m = -1', r"\[trees\] crown_m must be a positive number of metres"),
])
def test_bad_sea_tree_and_priority_rules_are_refused(tmp_path, old, new, msg):
    from geogan.classes import default_rules_text
    from geogan.errors import RulesError

    text = default_rules_text()
    assert old in text
    rules = tmp_path / "rules.toml"
    rules.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RulesError, match=msg):
        load_schema(rules)
