"""What a render writes beyond the three rasters, through the public API and CLI: provenance tags, class names,
scene.glb, layers classed and measured by --class/--height-field, buildings on one base on a DEM."""

from __future__ import annotations

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from typer.testing import CliRunner

from geogan.api import render
from geogan.cli import app
from geogan.sources import SourceOptions

from test_world_osm import UTM, lonlat, slope_town, sloping_dem

BOX = (10.4985, 54.2990, 10.5015, 54.3010)  # around test_world_osm's town (UTM 32)


def _measured_layer(tmp_path, n=12):
    """A GPKG of buildings with a HEIGHT field and no building field (as a survey delivers them)."""
    rng = np.random.default_rng(3)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    cx, cy = to_utm.transform(10.5, 54.3)
    geoms, heights = [], []
    for i in range(n):
        x0, y0 = cx - 80 + (i % 4) * 45, cy - 60 + (i // 4) * 45
        geoms.append(shapely.box(x0, y0, x0 + 20, y0 + 14))
        heights.append(round(float(rng.uniform(4, 30)), 2))
    import geopandas as gpd

    path = tmp_path / "survey.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"HEIGHT": heights}, geometry=geoms, crs=UTM), path)
    return path, geoms, heights


def test_outputs_carry_provenance_and_class_names(tmp_path, tiny_model):
    res = render(osm=slope_town(tmp_path), bbox=BOX, out_dir=tmp_path / "o", model=str(tiny_model), seed=7)
    for path in (res.aerial, res.height, res.classes):
        with rasterio.open(path) as ds:
            tags = ds.tags()
        assert tags["SYNTHETIC"] == "YES" and tags["GEOGAN_SEED"] == "7"
        assert "OpenStreetMap" in tags["TIFFTAG_COPYRIGHT"] and tags["GEOGAN_MODEL"] == tiny_model.stem
    assert "building" in (tmp_path / "o" / "classes.qml").read_text()
    assert "building" in (tmp_path / "o" / "classes.tif.aux.xml").read_text()


def test_render_mesh_writes_a_scene_beside_the_rasters(tmp_path, tiny_model):
    osm = slope_town(tmp_path)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["render", "--osm", str(osm), "--bbox", ",".join(map(str, BOX)), "--out",
                                      str(out), "--model", str(tiny_model), "--mesh", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "scene.glb").is_file() and "scene.glb" in result.output
    import pygltflib

    names = [n.name for n in pygltflib.GLTF2().load(str(out / "scene.glb")).nodes]
    assert sum(name.startswith("building/") for name in names) == 2 and "terrain" in names


def test_a_measured_height_layer_draws_with_class_and_height_field(tmp_path, tiny_model):
    path, geoms, heights = _measured_layer(tmp_path)
    res = render(osm=path, bbox=BOX, out_dir=tmp_path / "o", model=str(tiny_model), crs=UTM, res=0.5,
                 source_options=SourceOptions(class_name="building", height_field="HEIGHT"))
    with rasterio.open(res.height) as ds:
        z = ds.read(1)
        values = np.array(list(ds.sample([(g.centroid.x, g.centroid.y) for g in geoms])))[:, 0]
        inside = [bool(0 <= r < z.shape[0] and 0 <= c < z.shape[1])
                  for r, c in (ds.index(g.centroid.x, g.centroid.y) for g in geoms)]
    close = np.abs(values - np.asarray(heights))[inside] <= 1.0
    assert inside.count(True) >= 6 and close.mean() >= 0.9


def test_features_read_but_not_classified_say_how_to_class_them(tmp_path, tiny_model):
    path, *_ = _measured_layer(tmp_path)
    res = render(osm=path, bbox=BOX, out_dir=tmp_path / "o", model=str(tiny_model))
    assert any("none classified" in w and "--class" in w for w in res.warnings)


def test_flat_roofs_stay_flat_on_a_sloping_dem_in_a_render(tmp_path, tiny_model):
    dem, plane = sloping_dem(tmp_path)
    res = render(osm=slope_town(tmp_path), bbox=BOX, out_dir=tmp_path / "o", model=str(tiny_model), crs=UTM,
                 res=1.0, dem=dem)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    (x0, y0), (x1, y1) = (to_utm.transform(*lonlat(e, n)) for e, n in ((-58, -18), (-22, 18)))  # inset 2 m
    with rasterio.open(res.height) as ds:
        r0, c0 = ds.index(x0, y1)
        r1, c1 = ds.index(x1, y0)
        roof = ds.read(1)[r0:r1, c0:c1]
    assert roof.size > 500 and np.ptp(roof) <= 0.05
    lowest = plane(*to_utm.transform(*lonlat(-60, -20)))
    assert roof.mean() == pytest.approx(lowest + 12.0, abs=0.1)


def test_rasterize_takes_res_and_tap(tmp_path):
    from geogan.api import rasterize

    out = rasterize(osm=slope_town(tmp_path), bbox=BOX, crs=UTM, res=0.7, tap=True, out=tmp_path / "c.tif")
    with rasterio.open(out) as ds:
        assert ds.transform.a == 0.7 and ds.transform.e == -0.7
        for edge in (ds.bounds.left, ds.bounds.top, ds.bounds.right, ds.bounds.bottom):
            assert abs(edge / 0.7 - round(edge / 0.7)) < 1e-6
