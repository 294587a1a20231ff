"""Seamless blending of overlapping tiles, streamed strip by strip.

``blend_weights`` gives each tile a smooth window (raised cosine over the
overlap, flat in the middle). :class:`StripBlender` accumulates weighted tiles
of one tile row in a buffer as wide as the grid and ``tile_px`` tall, and
releases finished rows as soon as no later tile can touch them, so memory
grows with the grid width only, never with its area.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

_MIN_WEIGHT = 1e-3


def blend_weights_1d(tile_px: int, overlap_px: int) -> np.ndarray:
    """Weights along one axis: a raised-cosine ramp over ``overlap_px`` at both ends."""
    w = np.ones(tile_px, dtype=np.float32)
    if overlap_px > 0:
        t = (np.arange(overlap_px, dtype=np.float64) + 0.5) / overlap_px
        ramp = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
        w[:overlap_px] = ramp
        w[tile_px - overlap_px:] = ramp[::-1]
    return np.maximum(w, _MIN_WEIGHT)


def blend_weights(tile_px: int, overlap_px: int) -> np.ndarray:
    """2-D window (outer product of the 1-D ramps), shape (tile_px, tile_px)."""
    w = blend_weights_1d(tile_px, overlap_px)
    return np.outer(w, w)


class StripBlender:
    """Accumulate weighted tiles row by row and hand back finished rows.

    Parameters
    ----------
    shape_yx : grid shape
    bands : number of bands blended (e.g. 3 for RGB, 4 with height)
    tile_px, overlap_px : the tiling
    """

    def __init__(self, shape_yx: tuple[int, int], bands: int, tile_px: int, overlap_px: int,
                 first_row0: int = 0) -> None:
        self.shape_yx = shape_yx
        self.tile_px = tile_px
        self.stride_px = tile_px - overlap_px
        self.weights = blend_weights(tile_px, overlap_px)
        self._sum = np.zeros((bands, tile_px, shape_yx[1]), dtype=np.float32)
        self._wsum = np.zeros((tile_px, shape_yx[1]), dtype=np.float32)
        self._row0 = first_row0  # grid row of buffer row 0

    def add(self, row0: int, col0: int, values: np.ndarray) -> None:
        """Add one tile (bands, tile_px, tile_px) whose top-left is (row0, col0)."""
        r = row0 - self._row0
        if r != 0:
            raise ValueError("tiles must be added one tile row at a time, in order")
        h = min(self.tile_px, self.shape_yx[0] - row0)
        w = min(self.tile_px, self.shape_yx[1] - col0)
        wt = self.weights[:h, :w]
        self._sum[:, :h, col0:col0 + w] += values[:, :h, :w] * wt
        self._wsum[:h, col0:col0 + w] += wt

    def finish_row(self, last: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """After a tile row: yield (grid_row0, blended rows) that are final."""
        n = self.shape_yx[0] - self._row0 if last else min(self.stride_px, self.shape_yx[0] - self._row0)
        n = min(n, self.tile_px)
        if n <= 0:
            return
        out = self._sum[:, :n] / self._wsum[None, :n]
        yield self._row0, out
        keep = self.tile_px - n
        self._sum[:, :keep] = self._sum[:, n:]
        self._sum[:, keep:] = 0
        self._wsum[:keep] = self._wsum[n:]
        self._wsum[keep:] = 0
        self._row0 += n
