"""Python API for notebooks: GeoDataFrames in, xarray.Dataset out, a Renderer that loads a model once."""

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

import geogan

ROOT = Path(__file__).resolve().parents[1]


def _scene():
    x, y = 386_000.0, 6_697_000.0
    gdf = gpd.GeoDataFrame({"class": ["building", "water"]},
                           geometry=[box(x + 10, y + 10, x + 30, y + 30), box(x + 40, y, x + 64, y + 64)],
                           crs="EPSG:32635")
    return gdf, (x, y, x + 64, y + 64)


def test_geodataframe_in_xarray_out(tiny_model):
    gdf, bbox = _scene()
    ds = geogan.render(osm=gdf.to_crs("EPSG:4326"), bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5,
                       out_dir=None, model=str(tiny_model), tile_px=128, overlap_px=32)
    assert set(ds.data_vars) == {"aerial", "height", "classes"}
    assert ds.aerial.dims == ("band", "y", "x") and ds.sizes["band"] == 3
    assert ds.classes.dims == ("y", "x") and ds.rio.crs.to_epsg() == 32635
    # a 20 m x 20 m building at 0.5 m = 1600 px; it also got its default height
    assert int((ds.classes == 1).sum()) == pytest.approx(1600, rel=0.05)
    assert float(ds.height.where(ds.classes == 1).max()) > 0
    assert ds.rio.transform().a == pytest.approx(0.5, rel=1e-3)


def test_renderer_loads_once_and_renders_many(tmp_path, tiny_model):
    gdf, bbox = _scene()
    r = geogan.Renderer(model=str(tiny_model))
    a = r.render(osm=gdf, bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", out_dir=tmp_path / "a", tile_px=128,
                 overlap_px=32, seed=4)
    b = r.render(osm=gdf, bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", out_dir=tmp_path / "b", tile_px=128,
                 overlap_px=32, seed=4)
    assert np.array_equal(rasterio.open(a.aerial).read(), rasterio.open(b.aerial).read())


def test_example_script_runs(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook_example.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "class fractions" in p.stdout
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.crs.to_epsg() == 32635 and ds.res == pytest.approx((0.5, 0.5))


def test_frame_crs_does_not_matter_and_dataset_matches_files(tmp_path, tiny_model):
    gdf, bbox = _scene()
    kw = dict(bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5, model=str(tiny_model), tile_px=128,
              overlap_px=32, seed=2)
    ds_utm = geogan.render(osm=gdf, out_dir=None, **kw)
    ds_ll = geogan.render(osm=gdf.to_crs("EPSG:4326"), out_dir=None, **kw)
    # the same scene given in lon/lat or in UTM rasterizes to the same classes (up to reprojection round-off)
    assert (ds_utm.classes.values == ds_ll.classes.values).mean() > 0.999
    files = geogan.render(osm=gdf, out_dir=tmp_path / "f", **kw)
    with rasterio.open(files.classes) as c, rasterio.open(files.aerial) as a:
        assert ds_utm.rio.crs == c.crs
        assert tuple(ds_utm.rio.transform())[:6] == pytest.approx(tuple(c.transform)[:6])
        assert ds_utm.classes.shape == c.shape and np.array_equal(ds_utm.classes.values, c.read(1))
        assert np.array_equal(ds_utm.aerial.values, a.read())


def test_rasterize_array_takes_a_geodataframe():
    gdf, bbox = _scene()
    arr, grid = geogan.rasterize_array(gdf, bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5)
    assert grid.shape_yx == (128, 128)
    assert (arr == 1).sum() == pytest.approx(1600, rel=0.05) and (arr == 5).sum() > 2000
