"""White water in a texture bank (geogan.quilt_foam): foam, rapids, weirs and glint are never pasted into water.

Issue 29: narrow rivers in the sample town got bright white patches, taken from bank photos whose "water" is
white water. A small bank with calm dark rivers and lakes and a few photos of white water (same layouts, so the
class-layout search likes them as much as the calm ones) must draw only dark water.
"""

from __future__ import annotations

import numpy as np
import pytest

from geogan.quilt import QuiltSettings, TextureBank, look_pool, synthesize_tile
from geogan.quilt_foam import foamy_at, luminance, white_water_cells, white_water_limit

CLASSES = ("background", "building", "woodland", "water", "road")
WATER = 3
CALM, FOAM = (30, 60, 90), (225, 230, 230)  # luminance about 55 and 228


def photo(lab: np.ndarray, water_rgb: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Brown land (luminance about 110), water of ``water_rgb``, both noisy."""
    img = np.where((lab == WATER)[..., None], np.array(water_rgb, np.float32), np.float32([120, 110, 80]))
    return np.clip(img + rng.normal(0, 8, lab.shape + (3,)), 0, 255).astype(np.uint8)


def river(y0: int, width: int, size: int = 96) -> np.ndarray:
    lab = np.zeros((size, size), np.uint8)
    lab[y0:y0 + width] = WATER
    return lab


@pytest.fixture(scope="module")
def foam_bank() -> TextureBank:
    """Rivers 20 px wide and lakes: 8 calm photos, 3 of white water (same class maps)."""
    rng = np.random.default_rng(0)
    layouts = [river(30, 20), river(50, 20), river(40, 20), np.full((96, 96), WATER, np.uint8)]
    labels, images = [], []
    for k in range(8):
        labels.append(layouts[k % 4])
        images.append(photo(labels[-1], CALM, rng))
    for k in range(3):
        labels.append(layouts[(k + 2) % 4])  # a white-water lake and two white-water rivers
        images.append(photo(labels[-1], FOAM, rng))
    return TextureBank(np.stack(images), np.stack(labels), np.zeros(len(labels), np.int64), CLASSES)


def test_white_water_patches_are_found_in_the_bank(foam_bank):
    photo_of = foam_bank.index[:, 0]
    wet = foam_bank.pure == WATER
    assert foam_bank.foamy[photo_of >= 8].any() and not foam_bank.foamy[photo_of < 8].any()
    assert foam_bank.foamy[(photo_of == 10) & wet].all()  # the white-water lake
    land = (photo_of >= 8) & (foam_bank.pure == 0)
    assert land.any() and not foam_bank.foamy[land].any()  # its land patches stay drawable


@pytest.mark.parametrize("seed", range(6))
def test_white_water_is_never_pasted_into_a_river_or_lake(foam_bank, seed):
    lab = np.zeros((160, 192), np.uint8)
    lab[40:60] = WATER  # a narrow river: mixed blocks
    lab[100:, 120:] = WATER  # a lake: single-class blocks and its shore
    img = synthesize_tile(foam_bank, lab, seed=seed)
    lum = luminance(img)
    assert lum[lab == WATER].max() < 170, seed  # white water (about 228) would show; calm water is about 55
    assert 90 < np.median(lum[lab == 0]) < 130  # land is still drawn from the bank


def test_old_code_pasted_white_water(foam_bank):
    """The same bank with nothing marked as white water (what the code did before): white water shows."""
    bright = []
    for seed in range(6):
        bank = TextureBank(foam_bank.images, foam_bank.labels, foam_bank.looks, CLASSES,
                           QuiltSettings(foam_min_levels=300.0))
        assert not bank.foamy.any()
        lab = np.zeros((160, 192), np.uint8)
        lab[40:60] = WATER
        lab[100:, 120:] = WATER
        bright.append(int((luminance(synthesize_tile(bank, lab, seed=seed))[lab == WATER] > 170).sum()))
    assert max(bright) > 100, bright


def test_the_limit_is_robust_statistics_of_the_bank_water():
    hist = np.zeros(256, np.int64)
    hist[[50, 60, 70, 200]] = [10, 10, 10, 3]  # three calm levels, a little white water
    assert white_water_limit(hist, 2.0, 0.0) == 60 + 2 * 10
    assert white_water_limit(hist, 2.0, 32.0) == 60 + 32  # at least min_levels above the median


def test_a_bank_without_water_or_with_uniform_water_marks_nothing():
    rng = np.random.default_rng(1)
    lab = river(30, 20, 64)
    images = np.stack([photo(lab, CALM, rng), photo(lab, CALM, rng)])
    no_water = white_water_cells(images, np.stack([lab, lab]), None, 8, 2.0, 32.0)
    assert no_water.shape == (2, 9, 9) and not no_water.any()
    calm = white_water_cells(images, np.stack([lab, lab]), WATER, 8, 2.0, 32.0)
    assert not calm.any()


def test_foamy_at_any_position_matches_the_cells_a_patch_touches():
    flags = np.zeros((1, 8, 8), np.int32)
    flags[0, 3, 5] = 1  # pixels 24..31, 40..47 of a 64 px photo
    table = np.pad(flags.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    i = np.zeros(4, np.int64)
    y, x = np.array([0, 10, 32, 24]), np.array([0, 30, 32, 40])
    assert foamy_at(table, i, y, x, 16, 8).tolist() == [False, True, False, True]
    assert foamy_at(table, i[:1], np.array([48]), np.array([48]), 16, 8).tolist() == [False]  # at the photo edge


def test_every_look_keeps_calm_water(foam_bank):
    pool = look_pool(foam_bank, 0)
    assert ((foam_bank.pure[pool] == WATER) & ~foam_bank.foamy[pool]).any()
