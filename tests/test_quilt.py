"""Texture-bank models (geogan.quilt, quilt_model, quilt_cli): real photo patches quilted to a class map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

import geogan
from geogan.errors import InputError, ModelError
from geogan.quilt import (QuiltSettings, TextureBank, cell_fractions, feathered, hash_uniform, load_bank, margin_px,
                          min_cut_masks, paste, patches, save_bank, synthesize, synthesize_tile)
from test_anchor import SAMPLE, _centre_box, _overlap

CLASSES = ("background", "building", "woodland", "water", "road")
WATER, WOOD = 3, 2


def textured(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 'photo' of a class map: water blue with ripples, woodland green blobs, the rest sandy; all noisy."""
    base = np.array([[190, 180, 140], [170, 70, 60], [40, 100, 40], [30, 60, 130], [110, 110, 110]], np.float32)
    img = base[label] + rng.normal(0, 12, label.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bank() -> TextureBank:
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 96, 96), np.uint8)
    labels[0:2] = WATER
    labels[2:4, :, 40:] = WOOD
    labels[4:6, 30:70, 20:60] = WATER
    images = np.stack([textured(lab, rng) for lab in labels])
    return TextureBank(images, labels, np.array([0, 1, 0, 1, 0, 1]), CLASSES)


def test_each_class_is_drawn_from_photos_of_that_class(bank):
    lab = np.zeros((128, 160), np.uint8)
    lab[:, 80:] = WATER
    lab[:40, :60] = WOOD
    img = synthesize_tile(bank, lab, seed=3).astype(np.float32)
    assert img.shape == (128, 160, 3)
    water, sand, wood = img[8:-8, 88:-8], img[48:-8, 8:72], img[4:32, 4:52]
    assert water[..., 2].mean() > 110 and water[..., 0].mean() < 60  # blue
    assert sand[..., 0].mean() > 160  # sandy
    assert wood[..., 1].mean() > 80 and wood[..., 0].mean() < 70  # green


def test_any_window_agrees_exactly_with_every_other_window(bank):
    """Quilting is a pure function of the world position and the class map around it: overlapping windows,
    cut anywhere, give identical pixels (strips, Dask blocks and neighbouring renders join)."""
    rng = np.random.default_rng(5)
    world = np.zeros((400, 400), np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, 340, 2)
        world[y:y + 60, x:x + 60] = rng.choice([WATER, WOOD, 0])
    m = margin_px(bank.settings)
    whole = synthesize(bank, world, (1000, -37), seed=9)

    def window(r0: int, c0: int, h: int, w: int) -> np.ndarray:
        return synthesize(bank, world[r0:r0 + h + 2 * m, c0:c0 + w + 2 * m], (1000 + r0, -37 + c0), seed=9)

    for r0, c0, h, w in ((0, 0, 100, 100), (37, 51, 90, 120), (150, 3, 71, 200), (231 - m, 210 - m, 17, 19)):
        np.testing.assert_array_equal(window(r0, c0, h, w), whole[r0:r0 + h, c0:c0 + w])
    assert not np.array_equal(whole, synthesize(bank, world, (1000, -37), seed=10))  # the seed matters


def test_min_cut_masks_follow_the_cheapest_seam():
    err = np.ones((1, 6, 5))
    err[0, :, 3] = 0  # a free column
    mask = min_cut_masks(err)[0]
    assert mask[:, 3:].all() and not mask[:, :3].any()


def test_min_cut_masks_reach_the_first_and_last_columns():
    for free in (0, 4):
        err = np.ones((3, 7, 5))
        err[:, :, free] = 0
        assert (min_cut_masks(err)[:, :, free:].all()) and not min_cut_masks(err)[:, :, :free].any()


def test_patches_gather_the_same_pixels_as_slicing():
    rng = np.random.default_rng(3)
    photos = rng.integers(0, 256, (4, 40, 50, 3), dtype=np.uint8)
    i, y, x = rng.integers(0, 4, (6, 5)), rng.integers(0, 40 - 9, (6, 5)), rng.integers(0, 50 - 13, (6, 5))
    for arrays in (photos, photos[..., 0], photos[:, ::2, ::2]):  # RGB, one band, a strided view
        h, w = (9, 13) if arrays.shape[1] == 40 else (4, 6)
        yy, xx = y % (arrays.shape[1] - h + 1), x % (arrays.shape[2] - w + 1)
        got = patches(arrays, i, yy, xx, (h, w))
        want = np.stack([arrays[a, b:b + h, c:c + w] for a, b, c in zip(i.ravel(), yy.ravel(), xx.ravel())])
        assert np.array_equal(got, want.reshape(got.shape))
    with pytest.raises(IndexError):
        patches(photos, np.array([0]), np.array([35]), np.array([0]), 9)  # runs off the photo's bottom
    with pytest.raises(IndexError):
        patches(photos, np.array([0]), np.array([0]), np.array([45]), 9)  # ... off its right edge


def test_cell_fractions_are_the_class_shares_of_each_cell():
    labels = np.random.default_rng(4).integers(0, 3, (2, 16, 24)).astype(np.uint8)
    got = cell_fractions(labels, 3, 8)
    for n, r, c, k in np.ndindex(*got.shape):
        assert got[n, r, c, k] == (labels[n, r * 8:r * 8 + 8, c * 8:c * 8 + 8] == k).mean()


def test_paste_blends_blocks_in_raster_order_whatever_their_spacing():
    s = QuiltSettings(patch_px=16, overlap_px=4, cell_px=8)
    rng = np.random.default_rng(5)
    blocks = np.array([[0, 0], [0, 2], [0, 4], [1, 1], [1, 2], [1, 5], [2, 0], [2, 2]])  # even, crowded, uneven
    patch = rng.random((len(blocks), 16, 16, 3)).astype(np.float32)
    mask = rng.random((len(blocks), 16, 16)) > 0.3
    got = rng.random((3 * 12 + 4, 6 * 12 + 4, 3)).astype(np.float32)
    want = got.copy()
    paste(got, patch, blocks, mask, s)
    for (i, j), pt, a in zip(blocks, patch, feathered(mask, s.feather_px)[..., None]):
        region = want[i * 12:i * 12 + 16, j * 12:j * 12 + 16]
        region += a * (pt - region)
    assert np.array_equal(got, want)


def test_hash_is_a_pure_function_of_its_keys():
    a = hash_uniform(1, np.arange(1000), 7)
    assert np.array_equal(a, hash_uniform(1, np.arange(1000), 7)) and 0 <= a.min() and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.05 and not np.array_equal(a, hash_uniform(2, np.arange(1000), 7))


def test_bank_round_trip_and_errors(bank, tmp_path):
    path = tmp_path / "bank.npz"
    save_bank(path, bank, quality=95)
    back = load_bank(path)
    assert back.classes == CLASSES and np.array_equal(back.labels, bank.labels)
    assert np.abs(back.images.astype(int) - bank.images).mean() < 6  # JPEG
    path.write_bytes(b"not a bank")
    with pytest.raises(ModelError, match="build-bank"):
        load_bank(path)
    with pytest.raises(InputError):
        QuiltSettings(patch_px=16, overlap_px=8)
    with pytest.raises(InputError, match="more than"):
        synthesize(bank, np.zeros((50, 50), np.uint8), (0, 0))


@pytest.fixture(scope="module")
def bank_model(tmp_path_factory) -> Path:
    """A texture-bank model built by `geogan build-bank` from pairs made here (numbered 0.. train, 900.. val)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bank")
    pairs = root / "pairs"
    pairs.mkdir()
    rng = np.random.default_rng(2)
    grey = np.array([0, 45, 74, 176, 255], np.uint8)
    for n in list(range(8)) + [900, 901]:
        lab = np.zeros((96, 96), np.uint8)
        y, x = rng.integers(0, 50, 2)
        lab[y:y + 40, x:x + 40] = rng.choice([1, 2, 3, 4])
        img = textured(lab, rng)
        Image.fromarray(np.concatenate([img, np.repeat(grey[lab][..., None], 3, -1)], 1)).save(
            pairs / f"pair_{n:04d}.png")
    card = root / "m" / "photo.json"
    from geogan.cli import app
    r = CliRunner().invoke(app, ["build-bank", "--pairs", str(pairs), "--out", str(card), "--looks", "2",
                                 "--val-from", "900"])
    assert r.exit_code == 0, r.output
    assert json.loads(card.read_text())["arch"] == "quilt" and card.with_suffix(".npz").is_file()
    return card


def test_render_with_a_texture_bank(bank_model, tmp_path):
    res = geogan.render(osm=SAMPLE, bbox=_centre_box(120, 90), model=str(bank_model), out_dir=tmp_path / "r", seed=1)
    with rasterio.open(res.aerial) as ds:
        rgb = ds.read()[:3].astype(np.float32)
    assert rgb.mean() > 40 and rgb.std() > 10  # a picture, not black or flat


def test_overlapping_renders_with_a_texture_bank_are_identical(bank_model, tmp_path):
    mean, worst = _overlap(tmp_path, str(bank_model), "EPSG:32635", 0.5, "q")
    assert mean == 0 and worst == 0, (mean, worst)


def test_a_missing_bank_file_is_one_line(bank_model, tmp_path):
    card = json.loads(bank_model.read_text())
    card["bank"] = "gone.npz"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="texture bank gone.npz is missing"):
        geogan.render(osm=SAMPLE, bbox=_centre_box(60, 60), model=str(bad), out_dir=tmp_path / "x")


def test_coarser_output_is_quilted_at_the_bank_gsd_and_resampled(bank_model, tmp_path):
    res = geogan.render(osm=SAMPLE, bbox=_centre_box(200, 160), model=str(bank_model), out_dir=tmp_path / "c",
                        gsd_m=1.5, seed=2)
    with rasterio.open(res.aerial) as ds:
        rgb = ds.read()[:3].astype(np.float32)
    assert rgb.mean() > 40 and rgb.std() > 5 and (rgb.mean(0) > 0).all()  # every pixel drawn


def test_dask_render_with_a_texture_bank_equals_the_local_render(bank_model, tmp_path):
    kw = dict(osm=SAMPLE, bbox=_centre_box(200, 320), gsd_m=0.5, model=str(bank_model), tile_px=128, overlap_px=32,
              seed=5)
    local = geogan.render(out_dir=tmp_path / "local", **kw)
    dask = geogan.render(out_dir=tmp_path / "dask", workers=2, **kw)
    assert local.grid.height > 3 * 96  # several blocks
    with rasterio.open(local.aerial) as a, rasterio.open(dask.aerial) as b:
        assert np.array_equal(a.read(), b.read())


def test_seeds_take_the_looks_as_often_as_the_photos_show_them():
    from geogan.quilt_model import QuiltModel, look_of

    rng = np.random.default_rng(1)
    labels = np.zeros((10, 48, 48), np.uint8)
    images = np.stack([textured(lab, rng) for lab in labels])
    looks = np.array([0] * 7 + [1] * 2 + [2])  # look 0 holds 70 % of the photos
    model = QuiltModel(TextureBank(images, labels, looks, CLASSES), {"look": 2, "classes": list(CLASSES)},
                       np.arange(5), 5)
    assert look_of(model, 0) == 2  # seed 0: the card's look
    drawn = np.bincount([look_of(model, s) for s in range(1, 3001)], minlength=3) / 3000
    assert np.allclose(drawn, [0.7, 0.2, 0.1], atol=0.04)
    assert look_of(model, 17) == look_of(model, 17)


def test_a_wide_strip_quilted_in_column_chunks_is_the_same_picture(bank):
    """quilt_strip quilts wide strips a chunk of columns at a time (bounded memory): the same pixels."""
    from geogan.quilt_model import synthesize_columns

    rng = np.random.default_rng(5)
    world = np.zeros((200, 600), np.uint8)
    world[:, 350:460] = WOOD
    world[40:160, 230:300] = WATER
    world[rng.random(world.shape) < 0.01] = WATER
    whole = synthesize(bank, world, (46, -300), seed=4, look=1)
    for chunk in (37, 100, 1000):
        assert np.array_equal(synthesize_columns(bank, world, (46, -300), seed=4, look=1, chunk_px=chunk), whole)
