"""Terrain plausibility metrics (terrain-eval) and the terrain height losses of the trainer.
Everything is synthesised here (no shared data, no runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from geogan.training.terrain_chips import (
    class_colour_separation, make_terrain_chips, radial_power_spectrum, rank_agreement, relief_p95_p5,
    slope_w1_deg, spectral_slope,
)

GSD = 30.0


def _fractal(beta: float, n: int = 64, size: int = 64, seed: int = 0) -> np.ndarray:
    """Gaussian random surfaces whose radially averaged power falls as k**-beta."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size) * size
    k = np.hypot(f[:, None], f[None, :])
    k[0, 0] = 1.0
    amp = k ** (-beta / 2)
    spec = amp * (rng.normal(size=(n, size, size)) + 1j * rng.normal(size=(n, size, size)))
    return np.fft.ifft2(spec).real


def test_spectral_slope_recovers_power_law_and_flags_ripple():
    smooth = _fractal(3.0)
    assert spectral_slope(smooth) == pytest.approx(-3.0, abs=0.4)
    white = np.random.default_rng(1).normal(size=(32, 64, 64))
    assert abs(spectral_slope(white)) < 0.3
    # ripple on top of smooth terrain flattens the spectrum and moves power to short wavelengths
    rip = smooth + 1.0 * smooth.std() * np.random.default_rng(3).normal(size=smooth.shape)  # pixel noise
    assert spectral_slope(rip) > spectral_slope(smooth) + 0.5
    k, p = radial_power_spectrum(smooth)
    assert k[0] == 1 and k[-1] == 32 and (p > 0).all()


def test_distribution_and_ranking_helpers():
    rng = np.random.default_rng(2)
    a = rng.gamma(2.0, 7.0, 5000)
    assert slope_w1_deg(a, a) == 0.0
    assert slope_w1_deg(a, a + 5.0) == pytest.approx(5.0, abs=1e-9)
    assert rank_agreement([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_agreement([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(rank_agreement([1, 2], [1, 2]))
    chips = np.stack([np.tile(np.linspace(0, 100, 100), (10, 1)), np.zeros((10, 100))])
    r = relief_p95_p5(chips)
    assert r[0] == pytest.approx(90.0, abs=1.0) and r[1] == 0.0


def test_class_colour_separation_detects_class_blind_texture():
    labels = np.repeat(np.arange(3), 400).reshape(1, 30, 40)
    cols = np.array([[200, 20, 20], [20, 200, 20], [20, 20, 200]], float)
    distinct = cols[labels]
    grey = np.full(distinct.shape, 128.0)
    assert class_colour_separation(distinct, labels, 3)["mean_pairwise_distance"] > 200
    assert class_colour_separation(grey, labels, 3)["mean_pairwise_distance"] == 0.0
    # classes with too few pixels are left out
    assert set(class_colour_separation(distinct, labels, 4, min_px=100)["means"]) == {0, 1, 2}


def test_slope_angle_and_height_losses():
    from geogan.training.trainer import height_losses, slope_angle
    gain = 1000.0 / GSD  # height_scale_m / gsd_m
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16) * (30.0 / 1000.0)  # rises 30 m per 30 m
    np.testing.assert_allclose(slope_angle(ramp, gain).numpy(), math.pi / 4, atol=1e-5)
    flat = torch.zeros(1, 1, 16, 16)
    assert float(slope_angle(flat, gain).max()) < 1e-4
    same = height_losses(ramp, ramp.clone(), gain)
    assert float(same["slope"]) < 1e-6 and float(same["lowres"]) < 1e-6
    diff = height_losses(flat, ramp, gain)
    assert float(diff["slope"]) == pytest.approx(math.pi / 4, abs=1e-3) and float(diff["lowres"]) > 0.1
    assert float(diff["curv"]) < 1e-4  # a plane has no curvature
    checker = torch.from_numpy(np.indices((16, 16)).sum(0) % 2 * 0.001).float()[None, None]  # 1 m checkerboard
    assert float(height_losses(checker, flat, gain)["curv"]) == pytest.approx(4 * 0.001 * gain, rel=1e-3)


def _dem_dir(tmp_path):
    d = tmp_path / "dems"
    d.mkdir()
    rng = np.random.default_rng(5)
    crs = "EPSG:32632"
    for i, name in enumerate(("aaa-train.tif", "zzz-val.tif")):
        z = 300 + 400 * _fractal(3.2, n=1, size=160, seed=i)[0] / _fractal(3.2, n=1, size=160, seed=i)[0].std()
        z[:, :20] = 0.0  # sea on the west side
        z += rng.normal(0, 0.01, z.shape) * (z > 0)
        with rasterio.open(d / name, "w", driver="GTiff", width=160, height=160, count=1, dtype="float32", crs=crs,
                           transform=Affine(GSD, 0, 400000, 0, -GSD, 5100000)) as ds:
            ds.write(z.astype(np.float32), 1)
    return d


def test_recipe_and_training_defaults_for_terrain_chips(tmp_path):
    from geogan.training.chips import ChipSet
    from geogan.training.trainer import TERRAIN_LOSSES, _terrain_loss_overrides, recipe_for, train
    chips = tmp_path / "chips"
    make_terrain_chips(_dem_dir(tmp_path), chips, gsd_m=GSD, chip_px=64, max_chips_per_dem=4, val_dems=("zzz",))
    ts = ChipSet.load(chips, "train")
    assert _terrain_loss_overrides(None, ts, True, None) == TERRAIN_LOSSES
    assert _terrain_loss_overrides(None, ts, False, None) == {}
    assert _terrain_loss_overrides({"height_to_d": False}, ts, True, None) == {"height_to_d": False}
    with pytest.raises(Exception, match="unknown terrain loss"):
        _terrain_loss_overrides({"bogus": 1}, ts, True, None)
    r = recipe_for("unet", 7, shadow=True, height_to_d=True)
    assert r.d_params["in_nc"] == 7 + 4 and recipe_for("unet", 7, shadow=True).d_params["in_nc"] == 10
    # a few real steps with every height loss on; the card records wall_hours and the recipe
    log, card_path = train("unet", chips, tmp_path / "run", steps=3, shadow=True, threads=1, name="t",
                           arch_params={"ngf": 4, "n_down": 6}, disc_params={"ndf": 4}, checkpoint_every=100,
                           sample_every=100, log_every=1)
    import json
    card = json.loads(card_path.read_text())
    assert log.step == 3 and "wall_hours" in card["training"] and "cpu_hours" not in card["training"]
    rec = card["training"]["recipe"]
    assert rec["height_to_d"] is True and rec["flip"] is False and rec["texture_l1_weight"] > 0
    assert all(np.isfinite(h["loss_slope"]) and "loss_lowres" in h and "loss_texture" in h
               for h in log.history if h.get("g_step"))
    # resuming keeps the recipe the run was started with
    assert _terrain_loss_overrides(None, ts, True, tmp_path / "run" / "state.safetensors") == TERRAIN_LOSSES
    # a run from before the terrain losses resumes without them
    train("unet", chips, tmp_path / "old", steps=1, shadow=True, threads=1, name="t", terrain_losses={},
          arch_params={"ngf": 4, "n_down": 6}, disc_params={"ndf": 4}, checkpoint_every=100, sample_every=100)
    old = _terrain_loss_overrides(None, ts, True, tmp_path / "old" / "state.safetensors")
    assert old["height_to_d"] is False and old["height_slope_weight"] == 0.0 and old["flip"] is True
    # the evaluation runs on the exported model and reports the plausibility metrics
    from geogan.training.terrain_chips import evaluate_terrain_model
    m = evaluate_terrain_model(card_path, chips)
    for key in ("slope_w1_deg", "spectrum_slope", "relief_p95_p5_m", "rel_height_by_class",
                "texture_class_colour_separation", "slope_class_rank_agreement"):
        assert key in m
    assert m["spectrum_slope"]["real"] < -2  # the synthetic DEM is fractal (k^-3.2), not noise
    assert m["rel_height_by_class"]["water"]["real_mean_rel_height_m"] < 0  # sea lies below the chip mean


def test_prior_shading_undoes_the_chips_shading():
    """image / prior_shading(real height) recovers the albedo texture terrain-chips shaded (texture_l1 target)."""
    from geogan.models.shadow import ShadowGenerator
    from geogan.training.terrain_chips import shade_factor
    z = 100 * _fractal(4.0, n=1, size=64, seed=4)[0] / _fractal(4.0, n=1, size=64, seed=4)[0].std()
    scale = 1000.0
    sg = ShadowGenerator(relief_gain=scale / GSD)
    with torch.no_grad():
        prior = sg.prior_shading(torch.from_numpy((z - z.mean()) / scale).float()[None, None])[0, 0].numpy()
    ref = shade_factor(z.astype(np.float32), GSD)
    inner = (slice(2, -2), slice(2, -2))
    assert np.corrcoef(prior[inner].ravel(), ref[inner].ravel())[0, 1] > 0.9
    assert np.abs(prior[inner] - ref[inner]).mean() < 0.03
    with pytest.raises(ValueError):
        ShadowGenerator().prior_shading(torch.zeros(1, 1, 8, 8))
