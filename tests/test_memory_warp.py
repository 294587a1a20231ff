"""Issue 28: a render's peak memory must not follow the area's width. The streaming warp (geogan.warp) samples
each output strip in pieces of ``WARP_CHUNK_PX`` columns: the same pixels as in one piece, with float64
temporaries the size of a piece (a 16 km2 render's whole-width warp temporaries were its peak: +270 MB)."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import torch
from affine import Affine

from geogan import warp
from geogan.grid import Grid, grid_from_bbox
from geogan.warp import StripWarper


def _src(width: int, height: int = 300) -> Grid:
    return Grid("EPSG:32635", Affine(0.5, 0, 385_000, 0, -0.5, 6_700_000), (height, width))


def _image(src: Grid) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:src.height, 0:src.width]
    rgb = np.stack([128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0), (xx * 0.7) % 256, (yy * 0.3) % 256])
    return rgb.astype(np.uint8), (xx * 0.01 + yy * 0.02).astype(np.float32)


def _dst(src: Grid, crs: str, gsd_m: float, pad_m: float = 30.0) -> Grid:
    b = src.bounds
    return grid_from_bbox((b[0] + pad_m, b[1] + pad_m, b[2] - pad_m, b[3] - pad_m), "EPSG:32635", crs, gsd_m)


def _warp_all(src: Grid, dst: Grid, rgb, terrain, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    warper = StripWarper(src, dst, ratio)
    out = []
    for r0 in range(0, src.height, 128):
        out += warper.push(r0, rgb[:, r0:r0 + 128], terrain[r0:r0 + 128])
    assert warper.done
    return np.concatenate([s[1] for s in out], 1), np.concatenate([s[2] for s in out], 0)


@pytest.mark.parametrize("with_torch", [True, False])
@pytest.mark.parametrize("crs, gsd_m", [("EPSG:3857", 0.5), ("EPSG:4326", 2.0)])
def test_warp_in_column_pieces_gives_the_same_pixels(monkeypatch, with_torch, crs, gsd_m):
    src = _src(700)
    rgb, terrain = _image(src)
    dst = _dst(src, crs, gsd_m)
    if not with_torch:
        monkeypatch.setitem(sys.modules, "torch", None)  # numpy's bilinear, as where torch is not installed
    whole = _warp_all(src, dst, rgb, terrain, gsd_m / 0.5)
    monkeypatch.setattr(warp, "WARP_CHUNK_PX", 37)  # pieces of 37 output columns (a ragged last piece)
    pieces = _warp_all(src, dst, rgb, terrain, gsd_m / 0.5)
    assert whole[0].shape == (3,) + dst.shape_yx and pieces[0].shape == whole[0].shape
    assert np.array_equal(pieces[0], whole[0]) and np.array_equal(pieces[1], whole[1])


def _warp_peak_bytes(width: int) -> tuple[int, int]:
    """(traced peak bytes while one wide strip is pushed and warped (numpy's bilinear: every temporary a numpy
    array, which tracemalloc sees), output pixels)."""
    src = _src(width, 600)
    rgb, _ = _image(src)
    dst = _dst(src, "EPSG:3857", 0.5, pad_m=90.0)  # its bbox holds the tilted output (grid convergence)
    warper = StripWarper(src, dst, 1.0)
    tracemalloc.start()
    try:
        out = warper.push(0, rgb, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert warper.done
    return peak, sum(s[1].shape[1] * s[1].shape[2] for s in out)


def test_warp_memory_does_not_follow_the_width(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    narrow, narrow_px = _warp_peak_bytes(2048)
    wide, wide_px = _warp_peak_bytes(4096)
    per_px = (wide - narrow) / (wide_px - narrow_px)
    # what must follow the width: the warper's canonical rows (3 B/px, copied once), the sample coordinates (two
    # float64) and the uint8 result; whole-strip float64 temporaries (before: about 250 B/px) must not
    assert per_px < 40, f"the warp's peak grows by {per_px:.0f} bytes per output pixel of width"


assert torch is not None  # imported so the torch runtime's grid_sample path is the one the first test runs
