"""Shaped terrain (geogan.terrain_relief) and its hydrology helpers (geogan.terrain_hydro): flat water, rivers
that drain to the edge, no closed depressions but water, the class elevation order, no creases at class
edges. Everything is synthesised here (no shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from geogan.terrain_eval import crease_ratio, rank_inversions, water_ranges_m
from geogan.terrain_hydro import (cone_envelope_m, depression_depth_m, drains_to, edge_mask, flow_accumulation,
                                  gaussian_blur, label_components, priority_flood)
from geogan.terrain_relief import (FARMLAND, GRASS, ROCK, SNOW, WATER, WOODLAND, ReliefParams, base_field_m,
                                   shape_terrain, smooth_class_edges, split_water, valley_lowering_m)

GSD = 30.0


def _landscape(n: int = 128) -> np.ndarray:
    """Farmland lowland (left) with a lake, woodland hills, grass, a rock band and snow (right), and a
    2 px river from the snow down to the left edge."""
    c = np.full((n, n), FARMLAND, np.uint8)
    cols = np.arange(n)[None, :].repeat(n, 0)
    c[cols >= 48] = WOODLAND
    c[cols >= 72] = GRASS
    c[cols >= 92] = ROCK
    c[cols >= 108] = SNOW
    c[20:44, 12:36] = WATER                     # a lake 24 x 24 px (0.5 km2)
    rows = (n * 0.7 + 6 * np.sin(np.arange(n) / 9.0)).astype(int)
    for col in range(0, 104):                   # the river, meandering 2 px wide
        c[rows[col]:rows[col] + 2, col] = WATER
    return c


def _bad_model_heights(classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the raw model does wrong: rough noise, class offsets in the wrong order (water high, snow low),
    steps at class edges, a tilted lake."""
    rng = np.random.default_rng(seed)
    z = gaussian_blur(rng.normal(size=classes.shape), 3.0) * 200.0
    offset = {WATER: 60.0, FARMLAND: 40.0, WOODLAND: 0.0, GRASS: 30.0, ROCK: -30.0, SNOW: -50.0}
    for c, dz in offset.items():
        z[classes == c] += dz
    return z + np.arange(classes.shape[1])[None, :] * 0.5


def test_shaped_tile_has_flat_water_drainage_and_class_order():
    c = _landscape()
    z = shape_terrain(c, _bad_model_heights(c), GSD)
    lakes, rivers = split_water(c)
    assert lakes.sum() == 24 * 24 and rivers.sum() > 150
    # water flat within 0.5 m per lake
    assert max(water_ranges_m(z, lakes)) <= 0.5
    # the river drains to the left edge: a never-ascending path along the river from its source
    outlets = lakes | (rivers & edge_mask(c.shape))
    filled, _, _ = priority_flood(z, outlets, domain=lakes | rivers)
    assert np.all(filled[rivers] - z[rivers] <= 1e-9)
    src = np.argwhere(rivers)[np.argmax(np.argwhere(rivers)[:, 1])]
    assert z[tuple(src)] > z[rivers & edge_mask(c.shape)].max()
    # every land pixel drains by D8 to water or the edge; no closed depression except water
    water = lakes | rivers
    assert drains_to(z, water | edge_mask(c.shape))[~water].all()
    assert depression_depth_m(z, water | edge_mask(c.shape))[~water].max() < 1e-9
    # class order: snow > rock > grass > woodland > farmland > water (the raw heights had it reversed)
    means = [z[c == k].mean() for k in (WATER, FARMLAND, WOODLAND, GRASS, ROCK, SNOW)]
    assert np.all(np.diff(means) > 0), means


def test_raw_heights_fail_what_shaping_fixes():
    """The same checks fail on the unshaped heights (the regression guard for the shaping)."""
    c = _landscape()
    raw = _bad_model_heights(c)
    lakes, rivers = split_water(c)
    assert max(water_ranges_m(raw, lakes)) > 0.5
    assert depression_depth_m(raw, lakes | rivers | edge_mask(c.shape))[c != WATER].max() > 0.1
    assert raw[c == SNOW].mean() < raw[c == FARMLAND].mean()


def test_priority_flood_fills_a_pit_to_its_spill_level_with_a_gradient():
    z = np.add.outer(np.zeros(9), np.full(9, 10.0))
    z[3:6, 3:6] = 2.0                          # a pit inside a 10 m plateau, edge at 10 m
    z[0, 4] = 5.0                              # the spill point on the edge
    filled, order, parent = priority_flood(z, edge_mask(z.shape))
    assert np.all(filled[3:6, 3:6] == 10.0) and filled[0, 4] == 5.0
    eps, _, _ = priority_flood(z, edge_mask(z.shape), epsilon_m=0.01)
    assert drains_to(eps, edge_mask(z.shape)).all()
    assert not drains_to(z, edge_mask(z.shape))[4, 4]
    assert order[0] == 4 and parent[4] == -1   # the lowest outlet closes first


def test_components_rivers_and_accumulation():
    m = np.zeros((12, 12), bool)
    m[1:3, 1:3] = True
    m[5:11, 6] = True
    m[10, 7:11] = True
    lab, n = label_components(m)
    assert n == 2 and len(np.unique(lab[5:11, 6])) == 1
    c = np.full((40, 40), GRASS, np.uint8)
    c[5:20, 5:20] = WATER      # a lake
    c[30, :] = WATER           # a 1 px river
    lakes, rivers = split_water(c)
    assert lakes[5:20, 5:20].all() and not lakes[30].any() and rivers[30].all()
    ramp = np.add.outer(np.arange(10.0), np.zeros(5))
    assert flow_accumulation(ramp)[0].sum() == 50  # everything flows to row 0


def test_edge_smoothing_removes_a_crease_at_a_class_edge():
    c = np.full((64, 64), WOODLAND, np.uint8)
    c[:, 32:] = GRASS
    x = np.arange(64.0)
    z = np.add.outer(np.zeros(64), np.abs(x - 31.5) * -8.0)   # a sharp V ridge on the class edge
    z += gaussian_blur(np.random.default_rng(0).normal(size=z.shape), 2.0)
    water = np.zeros(c.shape, bool)
    before = crease_ratio(z, c, water, GSD)
    after = crease_ratio(smooth_class_edges(z, c, 2.0, 2), c, water, GSD)
    assert before > 3.0 and after < before / 3


def _river_through_a_ridge(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Woodland with a 1 px river (row n/2, edge to edge) banked by 1 px of farmland each side, and model
    heights with a 400 m north-south ridge that the river has to be carved through."""
    c = np.full((n, n), WOODLAND, np.uint8)
    c[n // 2 - 1:n // 2 + 2] = FARMLAND
    c[n // 2] = WATER
    ridge = 400.0 * np.exp(-((np.arange(n) - n / 2) ** 2) / (2 * 6.0 ** 2))
    noise = gaussian_blur(np.random.default_rng(0).normal(size=(n, n)), 2.0) * 5.0
    return c, np.add.outer(np.zeros(n), ridge) + noise


def test_river_carved_through_a_ridge_lies_in_a_valley_not_a_trench():
    """Carving a river down through a ridge left a one-pixel trench ~100 m deep (its walls were the
    sharpest bends of the shaped terrain, creases along every class edge that follows a river: crease ratio
    1.10 on the held-out DEMs); the land around it is now lowered into a valley with walls at the valley side
    slope, so the bank stands at most a wall step (8 m at 15 deg and 30 m) plus the cut and the base
    field's dip above the river."""
    c, raw = _river_through_a_ridge()
    n = c.shape[0]
    z = shape_terrain(c, raw, GSD)
    lakes, rivers = split_water(c)
    assert rivers[n // 2].all() and not lakes.any()
    bank_step_m = np.maximum(z[n // 2 - 1], z[n // 2 + 1]) - z[n // 2]
    assert bank_step_m.max() < 40.0, bank_step_m.max()
    # the ridge is still there away from the river, and the river crosses it far below its crest
    assert z[10, n // 2] - z[10, 5] > 150.0
    assert z[10, n // 2] - z[n // 2, n // 2] > 150.0
    water = lakes | rivers
    assert drains_to(z, water | edge_mask(c.shape))[~water].all()
    # a near-vertical valley side gives back the trench
    steep = shape_terrain(c, raw, GSD, ReliefParams(valley_side_slope_deg=89.9))
    assert (np.maximum(steep[n // 2 - 1], steep[n // 2 + 1]) - steep[n // 2]).max() > 60.0


def test_valley_lowering_is_a_cone_with_a_rounded_rim():
    excess = np.full((1, 101), np.nan)
    excess[0, 50] = 30.0
    low = valley_lowering_m(excess, 45.0, 5.0, 1.0)[0]
    assert low[50] == pytest.approx(30.0)                 # the river: exactly its excess depth
    assert np.allclose(low[45:50], 30.0 - np.arange(5, 0, -1))  # walls at 1 m per m (45 deg)
    assert np.allclose(low, low[::-1])
    assert low[:15].max() == 0.0 and np.all(np.diff(low[:51]) >= 0)
    rim = np.diff(low[:51])
    assert rim[np.nonzero(rim)[0][0]] < 1.0               # the rim rounds in, no kink at the top


def test_cone_envelope_is_the_max_over_peaks_of_chamfer_cones():
    rng = np.random.default_rng(3)
    peaks = np.where(rng.random((17, 23)) < 0.04, rng.random((17, 23)) * 50.0, np.nan)
    env = cone_envelope_m(peaks, 0.4, 2.0)
    rr, cc = np.indices(peaks.shape)
    want = np.full(peaks.shape, -np.inf)
    for r, c in np.argwhere(np.isfinite(peaks)):
        dy, dx = np.abs(rr - r), np.abs(cc - c)
        chamfer_px = np.maximum(dx, dy) + (np.sqrt(2.0) - 1.0) * np.minimum(dx, dy)
        want = np.maximum(want, peaks[r, c] - 0.4 * 2.0 * chamfer_px)
    assert np.allclose(env, want)
    assert np.all(cone_envelope_m(np.full((3, 4), np.nan), 0.4, 2.0) == -np.inf)


def test_base_field_orders_classes_with_the_fitted_coefficients():
    c = _landscape()
    b = base_field_m(c, GSD)
    assert b[c == SNOW].mean() > b[c == WOODLAND].mean() > b[c == FARMLAND].mean() > b[c == WATER].mean()


def test_rank_measures():
    assert rank_inversions({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 3.0, 2: 2.0}) == 1
    lakes = np.zeros((10, 10), bool)
    lakes[1:5, 1:5] = True
    z = np.zeros((10, 10))
    z[1, 1] = 2.0
    assert water_ranges_m(z, lakes) == [2.0]


def test_alternating_slope_share_flags_a_checkerboard():
    from geogan.terrain_eval import alternating_share
    board = (np.indices((40, 40)).sum(0) % 2).astype(float)
    assert alternating_share(board) == 1.0
    assert alternating_share(np.add.outer(np.arange(40.0), np.arange(40.0) ** 2)) == 0.0
    noise = np.random.default_rng(0).normal(size=(100, 100))
    assert abs(alternating_share(noise) - 2 / 3) < 0.02
