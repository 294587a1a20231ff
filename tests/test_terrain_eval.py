"""`geogan terrain-eval --dem-dir`: the structure measures on tiny synthetic DEMs written here (GeoTIFFs read
back with rasterio; the shipped terrain model runs as render runs it)."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from affine import Affine

from geogan.terrain_eval import SUMMARY_KEYS, EvalSettings, dem_windows, evaluate_terrain, format_table
from test_cli import geogan, one_line_error

GSD = 30.0


def _write_dem(path, z):
    # UTM 32N near 8.5E 46N (snow line of the class rules: 2980 m)
    t = Affine(GSD, 0, 460000.0, 0, -GSD, 5100000.0)
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype="float32",
                       crs="EPSG:32632", transform=t) as ds:
        ds.write(z.astype("float32"), 1)
    return path


def _coast_and_peak(n: int = 112, seed: int = 0) -> np.ndarray:
    """A 0 m sea in the north-west corner, a lowland and a 3400 m peak in the south-east, rough hills."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:n, 0:n].astype(float)
    z = 3400.0 * np.exp(-((r - 0.8 * n) ** 2 + (c - 0.8 * n) ** 2) / (2 * (0.25 * n) ** 2))
    z += 30.0 + 0.5 * (r + c) + 40 * np.sin(r / 5.0) * np.cos(c / 7.0) + rng.normal(0, 2.0, z.shape)
    z[:40, :40] = 0.0
    return z


def test_terrain_eval_command_on_tiny_dems(tmp_path):
    dems = tmp_path / "dems"
    dems.mkdir()
    _write_dem(dems / "tinyalps-a.tif", _coast_and_peak())
    _write_dem(dems / "other-train.tif", _coast_and_peak(seed=1))   # not held out: never read
    out = tmp_path / "eval.json"
    ran = geogan("terrain-eval", "--dem-dir", dems, "--held-out", "tinyalps", "--window-px", 96,
                 "--windows-per-dem", 1, "--out", out)
    assert ran.returncode == 0, ran.stderr
    assert "| class_rank_rho |" in ran.stdout and "tinyalps-a.tif" in ran.stdout
    res = json.loads(out.read_text())
    assert res["held_out_dems"] == ["tinyalps-a.tif"] and len(res["windows"]) == 1
    real, raw, shaped = (res["summary"][m] for m in ("real", "raw", "shaped"))
    assert real["class_rank_rho"] == 1.0 and real["class_rank_inversions"] == 0
    assert real["water_range_max_m"] == 0.0                      # the 0 m sea is flat in the real DEM
    assert shaped["water_range_max_m"] <= 0.5 and shaped["water_flat_share"] == 1.0
    assert shaped["land_reaches_outlet_share"] == 1.0 and shaped["land_in_closed_depression_share"] == 0.0
    assert set(raw) == set(shaped) == set(real)


def test_dem_windows_have_rivers_and_classes(tmp_path):
    p = _write_dem(tmp_path / "tinyalps-b.tif", _coast_and_peak(seed=2))
    (w,) = dem_windows(p, EvalSettings(window_px=96, windows_per_dem=1, river_min_km2=0.5))
    assert w.classes.shape == (96, 96) and np.isfinite(w.z_m).all()
    assert (w.classes == 0).mean() > 0.1                        # the sea and the rivers are water
    row = {k: None for k in SUMMARY_KEYS} | {"class_rank_rho": 0.9, "slope_deg": {"mean": 1.5, "p90": 3.0}}
    table = format_table({"summary": {"real": row, "shaped": row}})
    assert "| class_rank_rho | 0.9 | 0.9 |" in table and "| slope_deg mean / p90 / share < 0.5 | 1.5 / 3.0 / - |" in table


def test_terrain_eval_without_held_out_dems_is_one_line(tmp_path):
    (tmp_path / "dems").mkdir()
    _write_dem(tmp_path / "dems" / "somewhere.tif", _coast_and_peak())
    ran = geogan("terrain-eval", "--dem-dir", tmp_path / "dems", "--held-out", "nowhere")
    one_line_error(ran, 2, "no held-out DEM", "nowhere")
    ran = geogan("terrain-eval")
    one_line_error(ran, 2, "--dem-dir")
    ran = geogan("terrain-eval", "--dem-dir", tmp_path / "dems", "--chips", tmp_path)
    one_line_error(ran, 2, "not both")
    ran = geogan("terrain-eval", "--dem-dir", tmp_path / "dems", "--held-out", "somewhere", "--model", "recife")
    one_line_error(ran, 2, "recife")


def test_evaluate_terrain_api_keeps_other_dems_out(tmp_path):
    d = tmp_path / "dems"
    d.mkdir()
    _write_dem(d / "tinyalps-c.tif", _coast_and_peak(seed=3))
    _write_dem(d / "broken-train.tif", np.full((4, 4), np.nan))  # would fail if it were read
    res = evaluate_terrain("terrain", d, ["tinyalps"], EvalSettings(window_px=64, windows_per_dem=1))
    assert res["held_out_dems"] == ["tinyalps-c.tif"]


def test_shaped_terrain_dem_for_renders_is_flat_on_water_and_drains(tmp_path):
    """geogan.terrain_render: the model's tiles over a whole grid, shaped, served as an in-memory DEM."""
    from geogan.classes import load_schema
    from geogan.grid import Grid
    from geogan.infer import load_model
    from geogan.sketch import RasterClassSource
    from geogan.terrain import DemSource
    from geogan.terrain_hydro import depression_depth_m, edge_mask
    from geogan.terrain_render import shaped_terrain_dem, shapes_terrain
    from geogan.tiles import TileSpec

    schema = load_schema("geogan/data/terrain_rules.toml")
    model = load_model("terrain", schema, device="cpu")
    assert shapes_terrain(model.card) and not shapes_terrain({"outputs": ["rgb", "height"]})
    assert not shapes_terrain({"outputs": ["rgb"], "height_reference": "chip mean"})
    ids = np.full((96, 96), schema.by_name("farmland").id, np.uint8)
    ids[:, 60:] = schema.by_name("bare").id
    ids[:, 80:] = schema.by_name("snow").id
    ids[10:40, 10:40] = schema.by_name("water").id
    grid = Grid("EPSG:32632", Affine(GSD, 0, 460000.0, 0, -GSD, 5100000.0), (96, 96))
    with shaped_terrain_dem(RasterClassSource(ids, grid), grid, model, TileSpec(128, 32), seed=0) as path:
        with DemSource(path, reference_grid=grid) as dem:
            z = dem.read(grid).astype(np.float64)
    lake = ids == schema.by_name("water").id
    assert np.isfinite(z).all() and np.ptp(z[lake]) <= 0.5
    assert z[ids == schema.by_name("snow").id].mean() > z[ids == schema.by_name("farmland").id].mean()
    assert depression_depth_m(z, lake | edge_mask(z.shape))[~lake].max() < 0.01
