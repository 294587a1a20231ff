"""Dask front: a real LocalCluster of 2 workers gives the same COGs as the local render."""

import numpy as np
import pytest
import rasterio

import geogan
from geogan.api import sample_osm_path
from geogan.distributed import covered_rows
from geogan.grid import grid_from_bbox
from geogan.models.unet import NO_POSITION_CUE
from geogan.sources import osm_file_bounds
from geogan.tiles import TileSpec

from conftest import make_tiny_model


def test_blocks_cover_every_row_once():
    grid = grid_from_bbox((0, 0, 1000, 777), "EPSG:3857", "EPSG:3857", 1.0)
    for per_block in (1, 2, 3, 50):
        ranges = covered_rows(grid, TileSpec(128, 32), per_block)
        assert ranges[0][0] == 0 and ranges[-1][1] == grid.height
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


@pytest.mark.parametrize("model_heights, precision, arch_params",
                         [(False, "auto", None), (True, "auto", None), (False, "bf16", None),
                          (False, "auto", NO_POSITION_CUE)],
                         ids=["rgb-model", "rgb+height-model", "rgb-model-bf16", "no-position-cue-model"])
def test_dask_render_equals_local_render(tmp_path, tiny_model, model_heights, precision, arch_params):
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bbox = (cx - 0.002, cy - 0.0015, cx + 0.002, cy + 0.0015)
    model = make_tiny_model(tmp_path / "height_model", height_scale_m=20.0) if model_heights else \
        make_tiny_model(tmp_path / "eq_model", arch_params=arch_params) if arch_params else tiny_model
    kw = dict(osm=sample_osm_path(), bbox=bbox, gsd_m=0.5, model=str(model), tile_px=128, overlap_px=32,
              seed=5, precision=precision)
    local = geogan.render(out_dir=tmp_path / "local", **kw)
    dask = geogan.render(out_dir=tmp_path / "dask", workers=2, **kw)
    assert local.grid.height > 3 * 96  # several blocks
    for name in ("aerial", "height", "classes"):
        with rasterio.open(local.paths[name]) as a, rasterio.open(dask.paths[name]) as b:
            assert a.transform == b.transform and a.crs == b.crs
            assert np.array_equal(a.read(), b.read()), name
    if precision == "bf16":  # the workers rendered in bf16 too, not in fp32
        fp32 = geogan.render(out_dir=tmp_path / "fp32", **{**kw, "precision": "fp32"})
        with rasterio.open(fp32.aerial) as a, rasterio.open(dask.aerial) as b:
            assert not np.array_equal(a.read(), b.read())
    if model_heights:  # the generated terrain reached height.tif on both paths (not flat ground)
        with rasterio.open(dask.paths["height"]) as ds:
            h = ds.read(1)
        with rasterio.open(dask.paths["classes"]) as ds:
            ground = ds.read(1) == 0  # background: no building or canopy on top
        assert h[ground].std() > 0.5
