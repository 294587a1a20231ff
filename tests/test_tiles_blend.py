import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from geogan.blend import StripBlender, blend_weights, blend_weights_1d
from geogan.errors import InputError
from geogan.tiles import MIN_TILE_PX, TileSpec, fitting_tile_px, iter_tiles, tile_rows


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), tile=st.sampled_from([64, 128, 256]),
       overlap_frac=st.floats(0, 0.5))
def test_tiles_cover_grid_and_blend_to_constant(h, w, tile, overlap_frac):
    spec = TileSpec(tile, int(tile * overlap_frac) // 2 * 2)
    cover = np.zeros((h, w), dtype=np.int32)
    for t in iter_tiles((h, w), spec):
        ph, pw = t.paste_shape((h, w))
        assert ph > 0 and pw > 0
        cover[t.row0:t.row0 + ph, t.col0:t.col0 + pw] += 1
    assert cover.min() >= 1  # every pixel is covered
    # blending a constant image must give the constant back: weights normalise to one
    blender = StripBlender((h, w), 1, spec.tile_px, spec.overlap_px)
    out = np.full((h, w), np.nan, dtype=np.float32)
    rows = tile_rows((h, w), spec)
    for i, row in enumerate(rows):
        for t in row:
            blender.add(t.row0, t.col0, np.full((1, tile, tile), 3.0, dtype=np.float32))
        for row0, strip in blender.finish_row(last=i == len(rows) - 1):
            assert np.isnan(out[row0:row0 + strip.shape[1]]).all()  # each row is written once
            out[row0:row0 + strip.shape[1]] = strip[0]
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, 3.0, rtol=1e-5)


def test_blend_weights_are_smooth_and_positive():
    w1 = blend_weights_1d(256, 64)
    assert w1.min() > 0 and w1.max() == 1.0
    assert np.abs(np.diff(w1)).max() < 0.03  # no jump anywhere
    w = blend_weights(256, 64)
    assert w.shape == (256, 256)
    # overlapping ramps of neighbours sum to ~1
    np.testing.assert_allclose(w1[-64:] + w1[:64], 1.0, atol=2e-3)


def test_blending_two_different_tiles_has_no_seam():
    h, w = 64, 192
    spec = TileSpec(128, 64)
    blender = StripBlender((h, w), 1, 128, 64)
    rows = tile_rows((h, w), spec)
    assert len(rows[0]) == 2
    for t, value in zip(rows[0], (0.0, 1.0)):
        blender.add(t.row0, t.col0, np.full((1, 128, 128), value, dtype=np.float32))
    [(row0, strip)] = list(blender.finish_row(last=True))
    profile = strip[0, 10]
    assert np.abs(np.diff(profile)).max() < 0.05  # a smooth ramp, not a step of 1


@pytest.mark.parametrize("tile,overlap", [(8, 0), (128, -1), (128, 65)])
def test_bad_tile_specs(tile, overlap):
    with pytest.raises(InputError):
        TileSpec(tile, overlap)


# --- TileSpec as a value: whole pixels, checked at construction; messages name the numbers the checks use

@pytest.mark.parametrize("tile,overlap,words", [
    (20.0, 5, "whole number"), (128.5, 32, "whole number"), ("128", 32, "whole number"), (True, 0, "whole number"),
    (128, 2.5, "whole number"), (MIN_TILE_PX - 1, 0, f"{MIN_TILE_PX} px or more"), (8, 0, f"{MIN_TILE_PX} px or more"),
])
def test_tile_spec_refuses_non_integers_and_names_the_real_minimum(tile, overlap, words):
    with pytest.raises(InputError, match=words) as exc:
        TileSpec(tile, overlap)
    assert "\n" not in str(exc.value) and "64" not in str(exc.value)  # it once advised 64 px while 16 passed


def test_tile_spec_takes_numpy_integers_as_ints():
    spec = TileSpec(np.int64(128), np.int32(32))
    assert type(spec.tile_px) is int and type(spec.overlap_px) is int
    assert spec == TileSpec(128, 32) and hash(spec) == hash(TileSpec(128, 32))
    assert TileSpec(MIN_TILE_PX, MIN_TILE_PX // 2).stride_px == MIN_TILE_PX // 2  # the boundary passes


@pytest.mark.parametrize("tile,multiple,fits", [(100, 32, "96 or 128"), (20, 128, "128"), (200, 128, "128 or 256"),
                                                (24, 16, "16 or 32")])
def test_check_model_names_tile_sizes_that_fit(tile, multiple, fits):
    with pytest.raises(InputError, match=f"multiple of {multiple} px for model 'm'; use --tile-size {fits}$"):
        TileSpec(tile, 0).check_model(multiple, "m")
    TileSpec(256, 64).check_model(multiple, "m")  # a multiple passes


@settings(max_examples=200, deadline=None)
@given(tile=st.integers(-10, 2000), overlap=st.integers(-10, 1100))
def test_tile_spec_accepts_exactly_its_documented_range(tile, overlap):
    ok = tile >= MIN_TILE_PX and 0 <= 2 * overlap <= tile
    try:
        spec = TileSpec(tile, overlap)
    except InputError as exc:
        assert not ok and "\n" not in str(exc)
    else:
        assert ok and spec.stride_px >= spec.tile_px / 2
        assert dataclasses.replace(spec) == spec and hash(dataclasses.replace(spec)) == hash(spec)
        assert pickle.loads(pickle.dumps(spec)) == spec


@settings(max_examples=200, deadline=None)
@given(tile=st.integers(MIN_TILE_PX, 5000), multiple=st.sampled_from([1, 2, 8, 16, 32, 64, 128, 256]))
def test_suggested_tile_sizes_pass_every_check_and_are_the_nearest(tile, multiple):
    fits = fitting_tile_px(tile, multiple)
    for px in fits:
        TileSpec(px, px // 4).check_model(multiple, "m")
    assert all(px >= MIN_TILE_PX for px in fits)
    if tile % multiple == 0:
        assert tile in fits
    else:
        assert fits[-1] - multiple < tile < fits[-1]  # the next multiple up, and the one below when it is allowed
