"""End-to-end renders: OSM -> three COGs read back with rasterio."""

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

import geogan
from geogan.api import sample_osm_path
from geogan.sources import osm_file_bounds

SAMPLE = sample_osm_path()


def _small_bbox(frac=0.25):
    x0, y0, x1, y1 = osm_file_bounds(SAMPLE)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - (x1 - x0) * frac / 2, cy - (y1 - y0) * frac / 2, cx + (x1 - x0) * frac / 2, cy + (y1 - y0) * frac / 2)


def test_render_writes_three_aligned_cogs(tmp_path, tiny_model):
    bbox = _small_bbox()
    res = geogan.render(osm=SAMPLE, bbox=bbox, crs="EPSG:3857", gsd_m=0.5, out_dir=tmp_path, model=str(tiny_model),
                        tile_px=128, overlap_px=32, seed=1)
    grids = []
    for path, count, dtype in ((res.aerial, 3, "uint8"), (res.height, 1, "float32"), (res.classes, 1, "uint8")):
        valid, errors, _ = cog_validate(str(path))
        assert valid, errors
        with rasterio.open(path) as ds:
            assert ds.count == count and ds.dtypes[0] == dtype
            assert ds.crs.to_epsg() == 3857
            assert ds.overviews(1), "COG has overviews"
            grids.append((ds.transform, ds.shape))
            if path == res.classes:
                cmap = ds.colormap(1)
                assert cmap[1][:3] == (214, 39, 40) and cmap[2][:3] == (0, 0, 0)
                classes = ds.read(1)
            if path == res.height:
                assert ds.nodata == -9999.0
                height = ds.read(1)
            if path == res.aerial:
                aerial = ds.read()
    assert grids[0] == grids[1] == grids[2]
    # the grid covers the bbox exactly, with ~1 m projected pixels at 60N for 0.5 ground m
    from pyproj import Transformer
    t = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x0, y0, x1, y1 = t.transform_bounds(*bbox)
    transform, shape = grids[0]
    assert transform.c == pytest.approx(x0, abs=1e-6) and transform.f == pytest.approx(y1, abs=1e-6)
    assert transform.c + transform.a * shape[1] == pytest.approx(x1, abs=1e-6)
    assert transform.a == pytest.approx(0.5 / np.cos(np.radians((bbox[1] + bbox[3]) / 2)), rel=0.01)
    assert set(np.unique(classes)) >= {0, 1, 2}  # background, buildings and roads in the town centre
    assert (height[classes == 1] > 0).mean() > 0.95
    # no DEM: flat ground at 0 except buildings and vegetation canopy (woodland, wetland)
    assert (height[~np.isin(classes, [1, 6, 11])] == 0).all()
    assert aerial.std() > 1  # not a blank image


def test_same_seed_same_output_and_other_seed_differs(tmp_path, tiny_model):
    kw = dict(osm=SAMPLE, bbox=_small_bbox(0.15), gsd_m=0.5, model=str(tiny_model), tile_px=128, overlap_px=32)
    a = geogan.render(out_dir=tmp_path / "a", seed=7, **kw)
    b = geogan.render(out_dir=tmp_path / "b", seed=7, **kw)
    c = geogan.render(out_dir=tmp_path / "c", seed=8, **kw)
    read = lambda p: rasterio.open(p).read()
    assert np.array_equal(read(a.aerial), read(b.aerial))
    assert not np.array_equal(read(a.aerial), read(c.aerial))


def test_compiled_generator_renders_the_same_image(tmp_path, tiny_model):
    """--compile (torch.compile; CUDA graphs on a GPU) runs the same network: same pixels within rounding."""
    kw = dict(osm=SAMPLE, bbox=_small_bbox(0.1), gsd_m=0.5, model=str(tiny_model), tile_px=128, overlap_px=32, seed=3)
    eager = geogan.render(out_dir=tmp_path / "eager", **kw)
    compiled = geogan.render(out_dir=tmp_path / "compiled", compile=True, **kw)
    a, b = (rasterio.open(r.aerial).read().astype(int) for r in (eager, compiled))
    assert a.shape == b.shape and a.std() > 1 and np.abs(a - b).max() <= 1


def test_no_seams_at_tile_borders(tmp_path, tiny_model):
    """Across tile borders the image changes no more than inside tiles."""
    res = geogan.render(osm=SAMPLE, bbox=_small_bbox(0.3), gsd_m=0.5, out_dir=tmp_path, model=str(tiny_model),
                        tile_px=128, overlap_px=32, seed=3)
    img = rasterio.open(res.aerial).read().astype(np.float32).mean(axis=0)
    grad = np.abs(np.diff(img, axis=1)).mean(axis=0)  # mean |d/dx| per column boundary
    stride = 128 - 32
    borders = [c - 1 for c in range(stride, img.shape[1] - 1, stride)] + \
              [c + 128 - 32 - 1 for c in range(0, img.shape[1] - 128, stride)]
    borders = sorted({b for b in borders if 0 <= b < grad.size})
    inside = np.delete(grad, borders)
    assert grad[borders].max() <= np.percentile(inside, 99.5) * 1.5


def test_whole_equals_halves_away_from_the_cut(tmp_path, tiny_model):
    """Rendering an area whole or as two halves gives the same pixels (noise and context are global)."""
    from geogan.grid import grid_from_bbox
    bbox = _small_bbox(0.2)
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", 0.5)
    x0, y0, x1, y1 = grid.bounds
    kw = dict(osm=SAMPLE, bbox_crs="EPSG:3857", gsd_m=0.5, model=str(tiny_model), tile_px=128, overlap_px=32, seed=2)
    whole = geogan.render(bbox=(x0, y0, x1, y1), out_dir=tmp_path / "w", **kw)
    # cut at a multiple of the tile stride so the left half's tiles line up with the whole's
    cut_px = 96 * 2
    xm = x0 + cut_px * grid.res_xy[0]
    left = geogan.render(bbox=(x0, y0, xm, y1), out_dir=tmp_path / "l", **kw)
    w = rasterio.open(whole.aerial).read().astype(int)
    l_ = rasterio.open(left.aerial).read().astype(int)
    assert l_.shape[2] == cut_px
    # identical far from the cut (tiles there see the same inputs and noise)
    assert np.abs(w[:, :, :96] - l_[:, :, :96]).max() <= 1


def test_progress_and_cancel(tmp_path, tiny_model):
    seen = []
    geogan.render(osm=SAMPLE, bbox=_small_bbox(0.15), out_dir=tmp_path / "p", model=str(tiny_model), tile_px=128,
                  overlap_px=32, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(geogan.errors.Cancelled):
        geogan.render(osm=SAMPLE, bbox=_small_bbox(0.3), out_dir=tmp_path / "c", model=str(tiny_model), tile_px=128,
                      overlap_px=32, cancel=cancel)
    assert list((tmp_path / "c").iterdir()) == []  # nothing left behind, not even temporary files


def test_latitude_rescaling_of_model_input(tmp_path, tiny_model):
    """At GSD 1 m the model (native 0.5 m) sees tiles upsampled 2x."""
    from geogan.grid import grid_from_bbox
    from geogan.infer import model_input_px
    assert model_input_px(128, 1.0, 0.5, 32) == 256
    assert model_input_px(256, 0.5, 0.5, 32) == 256
    assert model_input_px(256, 0.25, 0.5, 32) == 128
    bbox = _small_bbox(0.3)
    res = geogan.render(osm=SAMPLE, bbox=bbox, gsd_m=1.0, out_dir=tmp_path, model=str(tiny_model),
                        tile_px=128, overlap_px=32)
    lat = (bbox[1] + bbox[3]) / 2
    with rasterio.open(res.aerial) as ds:
        assert ds.res[0] == pytest.approx(1.0 / np.cos(np.radians(lat)), rel=0.01)
    from geogan.classes import load_schema
    from geogan.infer import load_model
    from geogan.pipeline import plan_tiles
    from geogan.tiles import TileSpec
    plan = plan_tiles(res.grid, TileSpec(128, 32), load_model(str(tiny_model), load_schema(), "cpu"))
    assert set(plan.model_px_by_row) == {256}


def test_rasterize_api_and_array(tmp_path):
    bbox = _small_bbox(0.3)
    out = geogan.rasterize(osm=SAMPLE, bbox=bbox, crs="EPSG:32635", gsd_m=1.0, out=tmp_path / "c.tif")
    arr, grid = geogan.rasterize_array(SAMPLE, bbox=bbox, crs="EPSG:32635", gsd_m=1.0)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32635
        assert np.array_equal(ds.read(1), arr)
        assert ds.res[0] == pytest.approx(1.0, rel=0.01)


def test_dem_and_hillshade(tmp_path, tiny_model):
    """Terrain from a DEM in another CRS sits under the buildings; hillshade.tif is written."""
    from rasterio.transform import from_origin
    bbox = _small_bbox(0.2)
    # a DEM in UTM 35N rising 1 m per 10 m eastwards, covering the bbox with margin
    from pyproj import Transformer
    t = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True)
    x0, y0, x1, y1 = t.transform_bounds(*bbox)
    x0, y0, x1, y1 = x0 - 200, y0 - 200, x1 + 200, y1 + 200
    nx, ny = int((x1 - x0) / 5), int((y1 - y0) / 5)
    xs = x0 + (np.arange(nx) + 0.5) * 5
    dem = np.tile(((xs - x0) / 10 + 100).astype(np.float32), (ny, 1))
    dem_path = tmp_path / "dem.tif"
    with rasterio.open(dem_path, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="float32",
                       crs="EPSG:32635", transform=from_origin(x0, y1, 5, 5)) as ds:
        ds.write(dem, 1)
    res = geogan.render(osm=SAMPLE, bbox=bbox, out_dir=tmp_path / "o", model=str(tiny_model), tile_px=128,
                        overlap_px=32, dem=dem_path, hillshade=True)
    classes = rasterio.open(res.classes).read(1)
    height = rasterio.open(res.height).read(1)
    ground = height[classes == 0]
    assert ground.min() > 100 and ground.max() < 100 + (x1 - x0) / 10
    # rows rise eastwards: the ground on the east side is higher than on the west side
    west, east = height[:, :20][classes[:, :20] == 0], height[:, -20:][classes[:, -20:] == 0]
    assert east.mean() > west.mean() + 10
    with rasterio.open(res.hillshade) as ds:
        assert ds.dtypes[0] == "uint8" and ds.shape == classes.shape
