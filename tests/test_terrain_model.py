"""Learned terrain: chips from DEMs (class rules, voids, reprojection, height normalisation) and rendering
model heights into height.tif. Everything is synthesised in tmp_path (no shared data, no runs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from geogan.training.terrain_chips import (
    FARMLAND, ROCK, SAND, SNOW, WATER, TerrainRules, classify_terrain, denormalize_height, make_terrain_chips,
    normalize_height, reproject_dem,
)

GSD = 30.0


def _write_dem(path, z, crs, transform, nodata=None, dtype="float32"):
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype=dtype,
                       crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(z.astype(dtype), 1)
    return path


def _coast_to_peak(h=96, w=384):
    """Sea (0 m) | coastal plain 1-6 m | 53 deg cliff | 47 deg slope | a high, gently tilted summit plateau."""
    cols = np.arange(w, dtype=np.float64)
    z = np.zeros(w)
    plain = (cols >= 100) & (cols < 200)
    z[plain] = 1 + (cols[plain] - 100) * 0.05
    cliff = (cols >= 200) & (cols < 230)
    z[cliff] = 6 + (cols[cliff] - 199) * 40.0
    ramp = (cols >= 230) & (cols < 300)
    z[ramp] = 1206 + (cols[ramp] - 229) * 33.0
    top = cols >= 300
    z[top] = 3516 + (cols[top] - 299) * 0.5
    return np.repeat(z[None], h, 0).astype(np.float32)


def test_class_rules_known_answers():
    z = _coast_to_peak()
    c = classify_terrain(z, GSD, lat_deg=46.0)  # snow line 5500 - 120 * 21 = 2980 m
    row = c[48]
    assert (row[:95] == WATER).all()                      # the 0 m sea plateau
    assert (row[101:104] == SAND).all()                   # low, flat, next to the sea
    assert (row[120:190] == FARMLAND).all()               # flat lowland away from the coast
    assert (row[202:228] == ROCK).all()                   # 53 deg cliff
    assert (row[305:380] == SNOW).all()                   # summit above the snow line
    # the same summit near the equator (snow line 5500 m) is not snow
    warm = classify_terrain(z, GSD, lat_deg=5.0)
    assert not (warm == SNOW).any()
    assert TerrainRules().snowline_m(46.0) == pytest.approx(2980.0)


def test_flat_lake_is_water_and_small_pockets_are_not():
    rng = np.random.default_rng(0)
    z = (500 + np.add.outer(np.arange(128), np.arange(128)) * 0.7 + rng.normal(0, 0.3, (128, 128))).astype(np.float32)
    z[20:80, 20:80] = 612.0          # 3.2 km2 perfectly flat: a lake
    z[100:104, 100:104] = 0.0        # a 16 px pocket at 0 m: not sea
    c = classify_terrain(z, GSD, lat_deg=50.0)
    assert (c[25:75, 25:75] == WATER).all()
    assert not (c[100:104, 100:104] == WATER).any()
    assert (c[:10, :10] != WATER).all()


def test_chips_skip_voids_and_hold_out_whole_dems(tmp_path):
    dem_dir = tmp_path / "dems"
    dem_dir.mkdir()
    crs, tr = "EPSG:32632", Affine(GSD, 0, 400000, 0, -GSD, 5100000)
    rng = np.random.default_rng(1)
    base = (800 + np.cumsum(rng.normal(0, 3, (160, 160)), 1)).astype(np.float32)
    holed = base.copy()
    holed[70:80, 70:80] = -32768  # a void in the middle
    _write_dem(dem_dir / "aaa-holed.tif", holed.astype(np.int16), crs, tr, nodata=-32768, dtype="int16")
    _write_dem(dem_dir / "zzz-whole.tif", base, crs, tr)
    out = tmp_path / "chips"
    idx = make_terrain_chips(dem_dir, out, gsd_m=GSD, chip_px=32, max_chips_per_dem=1000, val_dems=("zzz",))
    by_dem = {}
    for ch in idx["chips"]:
        by_dem.setdefault(ch["dem"], []).append(ch)
    holed_chips, whole_chips = by_dem["aaa-holed.tif"], by_dem["zzz-whole.tif"]
    assert 0 < len(holed_chips) < len(whole_chips)
    for ch in holed_chips:  # no chip window touches the void (same grid: same CRS and spacing)
        r, c = ch["row"], ch["col"]
        assert r + 32 <= 70 or r >= 80 or c + 32 <= 70 or c >= 80, ch
        assert np.isfinite(np.load(out / "heights" / f"{ch['name']}.npy")).all()
    # validation = the held-out DEM's chips, all numbered after the training chips
    assert idx["val_dems"] == ["zzz-whole.tif"] and idx["val_from"] == len(holed_chips)
    assert all(int(ch["name"][5:]) >= idx["val_from"] for ch in whole_chips)
    # the trainer's reader sees labels, image and heights normalised around the chip mean
    from geogan.training.datasets import ChipsDataset
    ds = ChipsDataset(out, split="val", flip=False)
    x, img, h = ds[0]
    assert x.shape == (7, 32, 32) and img.shape == (3, 32, 32) and h.shape == (1, 32, 32)
    raw = np.load(out / "heights" / f"{whole_chips[0]['name']}.npy")
    np.testing.assert_allclose(h[0].numpy() * idx["height_scale_m"], raw - raw.mean(), atol=1e-2)


def test_reprojection_from_geographic_keeps_ground_spacing(tmp_path):
    lat0, lon0, n_lat, n_lon = 46.0, 8.0, 300, 420  # 1 arc-second: ~21.5 m east-west, ~30.9 m north-south
    res = 1 / 3600
    z = (1000 + 300 * np.sin(np.linspace(0, 6, n_lon))[None] + np.linspace(0, 200, n_lat)[:, None]).astype(np.float32)
    path = _write_dem(tmp_path / "geo.tif", z, "EPSG:4326", Affine(res, 0, lon0, 0, -res, lat0 + n_lat * res))
    dem = reproject_dem(path, GSD)
    assert dem.crs.to_epsg() == 32632
    assert dem.transform.a == pytest.approx(GSD) and -dem.transform.e == pytest.approx(GSD)
    width_m = n_lon * res * 111_320 * math.cos(math.radians(lat0 + n_lat * res / 2))
    height_m = n_lat * res * 111_132
    valid = np.isfinite(dem.z)
    # the valid footprint spans the DEM's ground extent at 30 m per pixel (within 3 %)
    assert valid.any(1).sum() * GSD == pytest.approx(height_m, rel=0.03)
    assert valid.any(0).sum() * GSD == pytest.approx(width_m, rel=0.03)
    assert np.nanmin(dem.z) >= z.min() - 1 and np.nanmax(dem.z) <= z.max() + 1  # bilinear: no overshoot


def test_height_normalisation_round_trips():
    rng = np.random.default_rng(3)
    h = (2000 + rng.normal(0, 150, (64, 64))).astype(np.float32)
    n = normalize_height(h, 1000.0)
    assert abs(float(n.mean())) < 1e-5 and n.min() > -1 and n.max() < 1
    np.testing.assert_allclose(denormalize_height(n, 1000.0, float(h.mean())), h, atol=1e-2)
    # beyond height_scale_m the value clips (documented)
    assert normalize_height(np.array([0.0, 5000.0]), 1000.0).tolist() == [-1.0, 1.0]
    from geogan.training.chips import normalize_heights
    t = normalize_heights(torch.from_numpy(h)[None], "mean", 1000.0)[0].numpy()
    np.testing.assert_allclose(t, n, atol=1e-6)


def _constant_height_model(tmp_path, name, height_value, scale_m=1000.0):
    """A tiny U-Net whose height channel is tanh(atanh(v)) = v everywhere (last layer zeroed)."""
    from geogan.models.checkpoint import save_generator
    from geogan.models.registry import build_generator
    from geogan.training.terrain_chips import SCHEMA_TO_TERRAIN, TERRAIN_CLASSES
    params = {"in_nc": 7, "out_nc": 4, "ngf": 4, "n_down": 3, "dropout": False, "noise": True, "norm": "batch"}
    g = build_generator("unet", params)
    last = g.out[1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.1, 0.2, -0.3, math.atanh(height_value)]))
    card = {"name": name, "arch": "unet", "arch_params": params, "classes": list(TERRAIN_CLASSES),
            "schema_to_model": dict(SCHEMA_TO_TERRAIN), "outputs": ["rgb", "height"], "height_scale_m": scale_m,
            "gsd_m": GSD, "license": "test"}
    _, card_path = save_generator(g.eval(), card, tmp_path / name)
    return card_path


def _sketch(tmp_path):
    from PIL import Image
    from geogan.classes import load_schema
    schema = load_schema()
    img = np.zeros((32, 32, 3), np.uint8)
    img[:] = schema.by_name("grass").color
    img[:, 16:] = schema.by_name("bare").color
    Image.fromarray(img).save(tmp_path / "sketch.png")
    return tmp_path / "sketch.png"


def test_render_writes_model_heights_in_metres(tmp_path):
    from geogan.api import render
    sketch = _sketch(tmp_path)
    bbox = (8.0, 46.0, 8.05, 46.03)
    got = {}
    for name, v in (("hi", 0.5), ("lo", -0.25)):
        card = _constant_height_model(tmp_path, name, v)
        res = render(bbox=bbox, crs="EPSG:32632", gsd_m=GSD, out_dir=tmp_path / name, model=str(card),
                     sketch=sketch, device="cpu", tile_px=64, overlap_px=16)
        with rasterio.open(res.height) as ds:
            got[name] = ds.read(1)
            assert ds.units[0] == "metre"
        with rasterio.open(res.aerial) as ds:
            rgb = ds.read()
        # aerial.tif is the texture (RGB channels), not the height channel
        assert abs(int(np.median(rgb[0])) - round((math.tanh(math.atanh(0.1)) + 1) * 127.5)) <= 1
    # height = model value x height_scale_m, in metres (grass/bare carry no canopy)
    np.testing.assert_allclose(got["hi"], 500.0, atol=0.05)
    np.testing.assert_allclose(got["lo"], -250.0, atol=0.05)


def test_shipped_terrain_model_card():
    from geogan.zoo import resolve_model
    try:
        card_path = resolve_model("terrain")
    except Exception:
        pytest.skip("no shipped terrain model")
    card = json.loads(open(card_path).read())
    assert card["outputs"] == ["rgb", "height"] and card["height_scale_m"] > 0
    assert card["gsd_m"] == GSD and "snow" in card["classes"]
    assert card["weights_sha256"] and card["training"]["val_dems"]


def test_shadow_generator_relief_mode_lights_from_the_north_west():
    from geogan.models.shadow import ShadowGenerator
    sg = ShadowGenerator(relief_gain=1000.0 / GSD)
    with torch.no_grad():  # no learned correction: only the Lambertian prior
        sg.conv2.weight.zero_()
        sg.conv2.bias.zero_()
    tex = torch.zeros(1, 3, 16, 16)  # reflectance 0.5
    torch.set_grad_enabled(False)
    try:
        _check_relief(sg, tex)
    finally:
        torch.set_grad_enabled(True)


def _check_relief(sg, tex):
    flat = sg(tex, torch.zeros(1, 1, 16, 16))
    np.testing.assert_allclose(flat.numpy(), 0.0, atol=1e-6)  # flat ground: (0.3 + 0.7) * 0.5 -> 0
    ramp = torch.linspace(0, 0.3, 16)  # rising 600 m per 480 m towards the east (faces west)
    west_facing = sg(tex, ramp.view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous())
    east_facing = sg(tex, ramp.flip(0).view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous())
    assert west_facing[..., 4:12, 4:12].mean() > 0.05 > -0.05 > east_facing[..., 4:12, 4:12].mean()


def test_terrain_chips_cli(tmp_path):
    import subprocess
    import sys
    z = _coast_to_peak(h=96, w=160)
    dem = _write_dem(tmp_path / "coast.tif", z, "EPSG:32632", Affine(GSD, 0, 400000, 0, -GSD, 5100000))
    run = lambda *a: subprocess.run([sys.executable, "-m", "geogan.cli", "terrain-chips", *map(str, a)],
                                    capture_output=True, text=True, timeout=300)
    bad = run("--out", tmp_path / "none")
    assert bad.returncode == 2 and "error: give --dem-dir" in bad.stderr
    ok = run("--dem", dem, "--out", tmp_path / "chips", "--chip-px", 32, "--height-scale-m", 500)
    assert ok.returncode == 0, ok.stderr
    idx = json.loads((tmp_path / "chips" / "index.json").read_text())
    assert idx["height_scale_m"] == 500 and idx["gsd_m"] == GSD and len(idx["chips"]) > 0
    # mostly-sea chips (> 90 % water) were dropped: every chip holds land
    from PIL import Image
    for ch in idx["chips"]:
        lab = np.asarray(Image.open(tmp_path / "chips" / f"{ch['name']}.png"))[:, 32:, 0]
        assert (lab != 0).mean() >= 0.1


def test_render_with_the_terrain_model_writes_shaped_terrain(tmp_path):
    """--model terrain without --dem: height.tif is the shaped terrain (flat lake, snow above farmland, no
    closed depression on land), not the model's tile-relative heights."""
    from PIL import Image
    from geogan.api import render
    from geogan.classes import load_schema
    from geogan.terrain_hydro import depression_depth_m, edge_mask
    rules = "geogan/data/terrain_rules.toml"
    schema = load_schema(rules)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:] = schema.by_name("farmland").color
    img[:, 40:] = schema.by_name("bare").color
    img[:, 52:] = schema.by_name("snow").color
    img[8:24, 8:24] = schema.by_name("water").color
    Image.fromarray(img).save(tmp_path / "sketch.png")
    res = render(bbox=(460000.0, 5098080.0, 461920.0, 5100000.0), bbox_crs="EPSG:32632", crs="EPSG:32632",
                 gsd_m=GSD, out_dir=tmp_path / "out", model="terrain", rules=rules, sketch=tmp_path / "sketch.png",
                 device="cpu")
    with rasterio.open(res.height) as ds:
        z = ds.read(1).astype(np.float64)
    with rasterio.open(res.classes) as ds:
        cls = ds.read(1)
    lake = cls == schema.by_name("water").id
    ground = (cls == schema.by_name("farmland").id) | (cls == schema.by_name("bare").id)
    assert lake.sum() > 150 and np.ptp(z[lake]) <= 0.5
    assert z[cls == schema.by_name("snow").id].mean() > z[cls == schema.by_name("farmland").id].mean() + 50
    # canopy-free classes show the terrain itself: it drains to the lake or the edge (bilinear resampling
    # onto the output grid leaves at most a few shallow pits)
    depth = depression_depth_m(np.where(ground | lake, z, z.max()), lake | edge_mask(z.shape))[ground]
    assert (depth > 0.1).mean() < 0.01 and depth.max() < 1.0
