"""Outputs outside the input data's coverage (issue 22): nodata by default, ``--fill background`` on request.

A small OSM extract declares bounds covering the west part of the area: the render's aerial.tif is
transparent (alpha 0, RGB 0), height.tif and classes.tif nodata exactly at the pixels whose centres lie
outside the bounds (checked against a per-pixel lon/lat test), a warning says how much, and
``fill="background"`` gives the previous outputs (drawn as background everywhere). Plus: rasterize,
other source types (GeoJSON layer extent, OSM without bounds), Dask = local, the CLI option, and
``--class-field`` naming a missing field.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio

import geogan
from geogan.api import rasterize, rasterize_array
from geogan.coverage import NODATA_CLASS, Coverage
from geogan.errors import InputError, SourceError
from geogan.grid import grid_from_bbox
from geogan.pipeline import HEIGHT_NODATA
from geogan.provenance import coverage_mask, osm_coverage_lonlat
from geogan.write import reduce_2x_alpha
from osm_factory import offset_lonlat, write_osm

from test_cli import geogan as geogan_cli
from test_qgis_plugin import qgis_home  # noqa: F401 (fixture)

LON0, LAT0 = 10.5, 54.3
# the area: 120 m x 80 m around (LON0, LAT0); the extract's bounds end 23.3 m east of the centre
AREA = (*offset_lonlat(LON0, LAT0, -60, -40), *offset_lonlat(LON0, LAT0, 60, 40))
EAST_EDGE_M = 23.3


def _extract(tmp_path, bounds=True):
    """A road and a building inside the west part; ``bounds``: declare the west part (True) or nothing."""
    w, s = offset_lonlat(LON0, LAT0, -80, -60)
    e, n = offset_lonlat(LON0, LAT0, EAST_EDGE_M, 60)
    road = {1: offset_lonlat(LON0, LAT0, -55, -5), 2: offset_lonlat(LON0, LAT0, 15, -5)}
    house = {10 + i: offset_lonlat(LON0, LAT0, dx, dy) for i, (dx, dy) in
             enumerate([(-30, 10), (-10, 10), (-10, 30), (-30, 30)])}
    ways = [(1, [1, 2], {"highway": "residential"}), (2, [10, 11, 12, 13, 10], {"building": "yes"})]
    return write_osm(tmp_path / ("extract.osm" if bounds else "nobounds.osm"), {**road, **house}, ways,
                     bounds=(w, s, e, n) if bounds else False)


def _read(path, masked=False):
    with rasterio.open(path) as ds:
        return ds.read(), ds.nodata, ds.count, ds.colorinterp


def _render(tmp_path, name, model, osm, **kw):
    return geogan.render(osm=osm, bbox=AREA, gsd_m=0.5, model=str(model), out_dir=tmp_path / name, tile_px=64,
                         overlap_px=16, seed=3, **kw)


def test_render_is_nodata_exactly_outside_the_extract_and_fill_background_draws_it(tmp_path, tiny_model, caplog):
    osm = _extract(tmp_path)
    with caplog.at_level(logging.WARNING, logger="geogan"):
        masked = _render(tmp_path, "masked", tiny_model, osm, hillshade=True)
    inside = coverage_mask(masked.grid, osm_coverage_lonlat([osm]))  # each pixel centre tested in lon/lat
    assert 0.6 < inside.mean() < 0.75 and inside[:, 0].all() and not inside[:, -1].any()
    outside_pct = f"{100 * (1 - inside.mean()):.1f} % of it is outside the data's coverage, left as nodata"
    assert any(outside_pct in w for w in masked.warnings), masked.warnings
    assert any(outside_pct in r.getMessage() for r in caplog.records)

    aerial, _, count, interp = _read(masked.aerial)
    assert count == 4 and interp[3] == rasterio.enums.ColorInterp.alpha
    assert np.array_equal(aerial[3], np.where(inside, 255, 0)) and not aerial[:3, ~inside].any()
    height, h_nodata, _, _ = _read(masked.height)
    assert h_nodata == HEIGHT_NODATA and np.array_equal(height[0] == HEIGHT_NODATA, ~inside)
    classes, c_nodata, _, _ = _read(masked.classes)
    assert c_nodata == NODATA_CLASS and np.array_equal(classes[0] == NODATA_CLASS, ~inside)
    assert (classes[0][inside] > 0).any()  # the road and the building are drawn
    shade, s_nodata, _, _ = _read(masked.hillshade)
    assert s_nodata == 0 and not shade[0][~inside].any() and (shade[0][inside] > 0).mean() > 0.95

    filled = _render(tmp_path, "filled", tiny_model, osm, fill="background")
    assert any("drawn as background (--fill background)" in w for w in filled.warnings)
    f_aerial, _, f_count, _ = _read(filled.aerial)
    f_height, _, _, _ = _read(filled.height)
    f_classes, f_nodata, _, _ = _read(filled.classes)
    assert f_count == 3 and f_nodata is None
    assert (f_classes[0][~inside] == 0).all() and (f_height[0][~inside] == 0).all()  # background, flat ground
    # inside the coverage both renders are the same pixels; outside the filled one is drawn, not black
    assert np.array_equal(f_aerial[:, inside], aerial[:3, inside])
    assert np.array_equal(f_classes[0][inside], classes[0][inside])
    assert np.array_equal(f_height[0][inside], height[0][inside])
    assert f_aerial[:, ~inside].mean() > 20


def test_a_fully_covered_render_is_unchanged(tmp_path, tiny_model):
    """The extract covers the whole area: three bands, no nodata on classes.tif, no warning."""
    osm = _extract(tmp_path)
    w, s = offset_lonlat(LON0, LAT0, -50, -30)
    e, n = offset_lonlat(LON0, LAT0, 10, 30)
    result = geogan.render(osm=osm, bbox=(w, s, e, n), gsd_m=0.5, model=str(tiny_model), out_dir=tmp_path / "o",
                           tile_px=64, overlap_px=16)
    assert not any("coverage" in x for x in result.warnings)
    assert _read(result.aerial)[2] == 3 and _read(result.classes)[1] is None


def test_jpeg_aerial_gets_an_internal_mask(tmp_path, tiny_model):
    osm = _extract(tmp_path)
    result = _render(tmp_path, "jpeg", tiny_model, osm, compression="jpeg")
    inside = coverage_mask(result.grid, osm_coverage_lonlat([osm]))
    with rasterio.open(result.aerial) as ds:
        assert ds.count == 3 and ds.compression.name.upper() == "JPEG"
        assert np.array_equal(ds.dataset_mask() > 0, inside)
        assert ds.overviews(1) == [] or ds.read_masks(1, out_shape=(ds.height // 2, ds.width // 2)).any()


def test_dask_render_with_a_mask_equals_local_render(tmp_path, tiny_model):
    osm = _extract(tmp_path)
    local = _render(tmp_path, "local", tiny_model, osm)
    dask = _render(tmp_path, "dask", tiny_model, osm, workers=2)
    for name in ("aerial", "height", "classes"):
        with rasterio.open(local.paths[name]) as a, rasterio.open(dask.paths[name]) as b:
            assert a.count == b.count and a.nodata == b.nodata
            assert np.array_equal(a.read(), b.read()), name
    assert _read(local.aerial)[2] == 4


def test_rasterize_marks_outside_the_extract_and_fill_background_restores_it(tmp_path):
    osm = _extract(tmp_path)
    out = rasterize(osm=osm, bbox=AREA, gsd_m=0.5, out=tmp_path / "classes.tif")
    classes, nodata, _, _ = _read(out)
    grid = grid_from_bbox(AREA, "EPSG:4326", "EPSG:3857", 0.5)
    inside = coverage_mask(grid, osm_coverage_lonlat([osm]))
    assert nodata == NODATA_CLASS and np.array_equal(classes[0] == NODATA_CLASS, ~inside)
    filled = rasterize(osm=osm, bbox=AREA, gsd_m=0.5, out=tmp_path / "filled.tif", fill="background")
    f_classes, f_nodata, _, _ = _read(filled)
    assert f_nodata is None and (f_classes[0][~inside] == 0).all()
    assert np.array_equal(f_classes[0][inside], classes[0][inside])
    array, _ = rasterize_array(osm, bbox=AREA, gsd_m=0.5)
    assert np.array_equal(array, classes[0])
    assert np.array_equal(rasterize_array(osm, bbox=AREA, gsd_m=0.5, fill="background")[0], f_classes[0])


def test_cli_fill_option(tmp_path):
    osm = _extract(tmp_path)
    bbox = ",".join(f"{v:.7f}" for v in AREA)
    ran = geogan_cli("rasterize", "--osm", osm, "--bbox", bbox, "--out", tmp_path / "c.tif", "--fill", "background")
    assert ran.returncode == 0, ran.stderr
    assert "% of it is outside the data's coverage, drawn as background" in " ".join(ran.stderr.split())
    assert _read(tmp_path / "c.tif")[1] is None
    bad = geogan_cli("rasterize", "--osm", osm, "--bbox", bbox, "--out", tmp_path / "d.tif", "--fill", "meadow")
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "--fill nodata" in lines[0], bad.stderr
    with pytest.raises(InputError, match="unknown fill"):
        geogan.render(osm=osm, fill="meadow")


def test_osm_without_bounds_is_covered_by_its_features_bounding_box(tmp_path):
    osm = _extract(tmp_path, bounds=False)
    classes, grid = rasterize_array(osm, bbox=AREA, gsd_m=0.5)
    ys, xs = np.nonzero(classes != NODATA_CLASS)
    drawn = np.nonzero((classes != NODATA_CLASS) & (classes > 0))
    assert (classes == NODATA_CLASS).any() and len(xs)
    # the covered pixels are the box around what was drawn (the road and the house)
    assert xs.min() == drawn[1].min() and xs.max() == drawn[1].max()
    assert ys.min() == drawn[0].min() and ys.max() == drawn[0].max()
    assert (classes[ys.min():ys.max() + 1, xs.min():xs.max() + 1] != NODATA_CLASS).all()


def test_a_geojson_layer_covers_its_extent(tmp_path):
    w, s = offset_lonlat(LON0, LAT0, -40, -30)
    e, n = offset_lonlat(LON0, LAT0, 0, 0)
    layer = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"class": "building"},
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}]}
    path = tmp_path / "houses.geojson"
    path.write_text(json.dumps(layer))
    classes, grid = rasterize_array(path, bbox=AREA, gsd_m=0.5, class_field="class")
    expected = Coverage(grid, _box_in(grid, (w, s, e, n))).rows(0, grid.height)
    assert 0.1 < expected.mean() < 0.2
    assert np.array_equal(classes == NODATA_CLASS, ~expected)


def _box_in(grid, lonlat_box):
    import pyproj
    import shapely

    t = pyproj.Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    x0, y0 = t.transform(lonlat_box[0], lonlat_box[1])
    x1, y1 = t.transform(lonlat_box[2], lonlat_box[3])
    return shapely.box(x0, y0, x1, y1)


def test_coverage_rows_are_the_same_in_any_strip_and_for_any_polygon():
    import shapely

    grid = grid_from_bbox(AREA, "EPSG:4326", "EPSG:32632", 0.5)
    cx, cy = (grid.bounds[0] + grid.bounds[2]) / 2, (grid.bounds[1] + grid.bounds[3]) / 2
    donut = shapely.Point(cx, cy).buffer(30.0).difference(shapely.Point(cx + 5, cy).buffer(10.0))
    poly = shapely.union_all([donut, shapely.box(cx + 40, cy - 20, cx + 55, cy + 5)])  # two parts, a hole
    cov = Coverage(grid, poly)
    whole = cov.rows(0, grid.height)
    strips = np.concatenate([cov.rows(r, min(37, grid.height - r)) for r in range(0, grid.height, 37)])
    assert np.array_equal(whole, strips) and 0 < whole.mean() < 1
    t = grid.transform  # the row-by-row test agrees with shapely's point-in-polygon test
    x = t.a * (np.arange(grid.width) + 0.5) + t.c
    y = t.e * (np.arange(grid.height) + 0.5) + t.f
    assert np.array_equal(whole, shapely.contains_xy(poly, x[None, :], y[:, None]))
    assert cov.covered_share() == pytest.approx(whole.mean(), abs=0.01)


def test_alpha_overviews_average_only_covered_colours():
    rgba = np.array([[[200, 0], [0, 0]], [[100, 0], [0, 0]], [[50, 0], [0, 0]], [[255, 0], [0, 0]]], np.uint8)
    out = reduce_2x_alpha(rgba)
    assert out[:, 0, 0].tolist() == [200, 100, 50, 64]


def test_class_field_missing_from_an_osm_file_is_an_error_naming_the_fields(tmp_path):
    osm = _extract(tmp_path)
    with pytest.raises(SourceError, match=r"--class-field 'kind'.*no such field.*highway.*building") as err:
        rasterize_array(osm, bbox=AREA, gsd_m=0.5, class_field="kind")
    assert "\n" not in str(err.value)
    w, s = offset_lonlat(LON0, LAT0, -40, -30)
    layer = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"class": "building"},
        "geometry": {"type": "Point", "coordinates": [w, s]}}]}
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps(layer))
    with pytest.raises(SourceError, match=r"has no field 'kind'; its fields are: class"):
        rasterize_array(path, bbox=AREA, gsd_m=0.5, class_field="kind")


def test_qgis_fill_parameter_round_trip(tmp_path, qgis_home):  # noqa: F811
    """The QGIS rasterize algorithm: an OSM file reaching part of the extent gives nodata outside its bounds,
    FILL_BACKGROUND=true background; the parameter reaches geogan."""
    from test_qgis_plugin import QGIS_PROCESS, _extent, _ok, qgis_process

    if not QGIS_PROCESS.exists():
        pytest.skip("QGIS is not installed (/usr/bin/qgis_process.bin missing); run scripts/install_qgis.sh")
    osm = _extract(tmp_path)
    common = ("--", f"OSM_FILE={osm}", f"EXTENT={_extent(AREA, 'EPSG:4326')}", "OUTPUT_CRS=EPSG:3857", "GSD_M=1")
    _ok(qgis_process(qgis_home, "run", "geogan:rasterize", *common, f"OUTPUT={tmp_path / 'nodata.tif'}"))
    _ok(qgis_process(qgis_home, "run", "geogan:rasterize", *common, "FILL_BACKGROUND=true",
                     f"OUTPUT={tmp_path / 'filled.tif'}"))
    masked, nodata, _, _ = _read(tmp_path / "nodata.tif")
    filled, f_nodata, _, _ = _read(tmp_path / "filled.tif")
    assert nodata == NODATA_CLASS and f_nodata is None
    outside = masked[0] == NODATA_CLASS
    assert 0.2 < outside.mean() < 0.4 and outside[:, -1].all() and not outside[:, 0].any()
    assert (filled[0][outside] == 0).all() and np.array_equal(filled[0][~outside], masked[0][~outside])


def test_geodataframes_put_no_mask_on_the_outputs(tmp_path):
    """Features chosen in memory carry no extent that says what was mapped: background around them."""
    gpd = pytest.importorskip("geopandas")
    import shapely

    w, s = offset_lonlat(LON0, LAT0, -40, -30)
    e, n = offset_lonlat(LON0, LAT0, 0, 0)
    frame = gpd.GeoDataFrame({"class": ["building"]}, geometry=[shapely.box(w, s, e, n)], crs="EPSG:4326")
    classes, _ = rasterize_array(frame, bbox=AREA, gsd_m=0.5)
    assert not (classes == NODATA_CLASS).any() and (classes == 1).any() and (classes == 0).any()


def test_a_bbox_wholly_outside_the_extract_is_all_nodata(tmp_path, caplog):
    osm = _extract(tmp_path)
    far = (*offset_lonlat(LON0, LAT0, 500, 500), *offset_lonlat(LON0, LAT0, 560, 540))
    with caplog.at_level(logging.WARNING, logger="geogan"):
        classes, _ = rasterize_array(osm, bbox=far, gsd_m=0.5)
    assert (classes == NODATA_CLASS).all()
    assert any("covers 0.0 % of the area: 100.0 % of it is outside" in r.getMessage() for r in caplog.records)
