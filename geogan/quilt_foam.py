"""White water in a texture bank: water pixels far brighter than the bank's water normally is (foam, rapids,
weirs, riprap labelled as water, sun glint on wind-rippled lakes).

Such patches pasted into a calm river or lake show as white blobs. The bank's own pixels say what "normal" is:
the luminance of its water pixels has a median and a median absolute deviation (MAD); a ``cell_px`` cell of a
photo is *white water* where the mean luminance of its water pixels (at least a quarter of the cell) lies more
than ``foam_mads`` MADs (and at least ``foam_min_levels`` grey levels) above that median. A patch touching such a
cell is never drawn (:func:`foamy_at`).

Pure functions over numpy arrays.
"""

from __future__ import annotations

import numpy as np

LUMA_256 = (77, 150, 29)  # ITU-R BT.601 luma weights, in 1/256
CHUNK_PHOTOS = 64  # photos converted at once (bounds the temporary arrays of a bank load)


def luminance(images: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W): BT.601 luma of uint8 RGB ``images`` (..., H, W, 3), in integer arithmetic."""
    r, g, b = (images[..., k].astype(np.uint16) for k in range(3))
    return ((r * LUMA_256[0] + g * LUMA_256[1] + b * LUMA_256[2]) >> 8).astype(np.uint8)


def water_cell_stats(images: np.ndarray, labels: np.ndarray, water: int, cell_px: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 (256,) histogram of the water pixels' luminance, float32 (N, H/c, W/c) sum of the water luminance
    per cell, int32 (N, H/c, W/c) water pixels per cell), ``CHUNK_PHOTOS`` photos at a time."""
    n, h, w = labels.shape
    hc, wc = h // cell_px, w // cell_px
    hist = np.zeros(256, np.int64)
    sums = np.zeros((n, hc, wc), np.float32)
    counts = np.zeros((n, hc, wc), np.int32)
    wet_photos = np.flatnonzero((labels == water).any((1, 2)))  # the others hold no water: zeros
    for a in range(0, len(wet_photos), CHUNK_PHOTOS):
        k = wet_photos[a:a + CHUNK_PHOTOS]
        lum = luminance(images[k, :hc * cell_px, :wc * cell_px])
        wet = labels[k, :hc * cell_px, :wc * cell_px] == water
        hist += np.bincount(lum[wet], minlength=256)
        shape = (len(k), hc, cell_px, wc, cell_px)
        sums[k] = (lum * wet).reshape(shape).sum((2, 4), dtype=np.float32)
        counts[k] = wet.reshape(shape).sum((2, 4), dtype=np.int32)
    return hist, sums, counts


def hist_median(hist: np.ndarray) -> int:
    """The median level of a histogram of levels 0 .. len - 1 (the lower one for an even count)."""
    return int(np.searchsorted(np.cumsum(hist), (hist.sum() + 1) // 2))


def white_water_limit(hist: np.ndarray, mads: float, min_levels: float) -> float:
    """The luminance above which water is white water: median + max(``mads`` x MAD, ``min_levels``)."""
    med = hist_median(hist)
    dev = np.bincount(np.abs(np.arange(len(hist)) - med), weights=hist, minlength=len(hist))
    return med + max(mads * hist_median(dev), min_levels)


def white_water_cells(images: np.ndarray, labels: np.ndarray, water: int | None, cell_px: int, mads: float,
                      min_levels: float) -> np.ndarray:
    """int32 (N, H/c + 1, W/c + 1): summed-area table of the white-water cells of each photo (zeros where the bank
    has no water class or no water)."""
    n, h, w = labels.shape
    flags = np.zeros((n, h // cell_px, w // cell_px), np.int32)
    if water is not None:
        hist, sums, counts = water_cell_stats(images, labels, water, cell_px)
        if hist.sum():
            limit = white_water_limit(hist, mads, min_levels)
            enough = counts * 4 >= cell_px * cell_px
            flags = (enough & (sums > limit * np.maximum(counts, 1))).astype(np.int32)
    return np.pad(flags.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))


def foamy_at(table: np.ndarray, i: np.ndarray, y: np.ndarray, x: np.ndarray, patch_px: int, cell_px: int
             ) -> np.ndarray:
    """bool (same shape as ``i``): whether the patch of photo ``i`` at (``y``, ``x``) (any position inside the
    photo) touches a white-water cell of :func:`white_water_cells` ``table``."""
    r0, c0 = y // cell_px, x // cell_px
    r1 = np.minimum((y + patch_px - 1) // cell_px + 1, table.shape[1] - 1)
    c1 = np.minimum((x + patch_px - 1) // cell_px + 1, table.shape[2] - 1)
    return (table[i, r1, c1] - table[i, r0, c1] - table[i, r1, c0] + table[i, r0, c0]) > 0
