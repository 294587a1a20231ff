import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from geogan.blend import StripBlender, blend_weights, blend_weights_1d
from geogan.errors import InputError
from geogan.tiles import TileSpec, iter_tiles, tile_rows


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
