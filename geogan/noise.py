"""Position-hashed randomness: values that depend only on (seed, global pixel position).

Tiles, strips and Dask blocks that overlap see exactly the same numbers, which keeps renders
seamless and repeatable. SplitMix64 finalisers on uint64 arrays (wrapping arithmetic) pick, for
each 64 px cell of the plane, a window of a per-seed bank of normal values (:func:`noise_window`).
"""

from __future__ import annotations

import functools

import numpy as np

M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
GOLD = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * M1
    z = z ^ (z >> np.uint64(27))
    z = z * M2
    return z ^ (z >> np.uint64(31))


NOISE_CELL_PX = 64  # the global noise field is made of cells this size, each a window of the seed's bank
NOISE_BANK_PX = 1024  # side of the per-seed bank of standard-normal values the cells are cut from


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int) -> np.ndarray:
    bank = np.random.default_rng([seed & 0xFFFFFFFF, 0x6E6F697365]).standard_normal(
        (NOISE_BANK_PX, NOISE_BANK_PX), dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _cell_offsets(seed: int, cell_rows: np.ndarray, cell_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where in the bank each global cell (row, col) starts: a hash of (seed, cell position)."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFFFFFF) * GOLD
        z = splitmix64(key + cell_rows.astype(np.int64).astype(np.uint64)[:, None] * M2
                       + cell_cols.astype(np.int64).astype(np.uint64)[None, :] * GOLD + M2)
    span = np.uint64(NOISE_BANK_PX - NOISE_CELL_PX + 1)
    return (z % span).astype(np.int64), ((z >> np.uint64(32)) % span).astype(np.int64)


def noise_window(seed: int, row0: int, col0: int, height_px: int, width_px: int) -> np.ndarray:
    """Standard-normal noise (height, width) at global pixel position (row0, col0) for ``seed``.

    Any two windows agree where they overlap. The plane is cut into 64 px cells and each cell
    copies a window of a per-seed bank of 1024^2 normal values, at an offset hashed from the
    cell's position (about 6x cheaper than hashing every pixel, which an earlier version did).
    Values within a cell are independent normals; cells are independent draws of the bank.
    """
    c = NOISE_CELL_PX
    r_cells = np.arange(row0 // c, (row0 + height_px - 1) // c + 1)
    c_cells = np.arange(col0 // c, (col0 + width_px - 1) // c + 1)
    off_r, off_c = _cell_offsets(seed, r_cells, c_cells)
    bank = _noise_bank(seed)
    out = np.empty((height_px, width_px), dtype=np.float32)
    for i, cr in enumerate(r_cells.tolist()):
        top, bottom = max(row0, cr * c), min(row0 + height_px, (cr + 1) * c)
        for j, cc in enumerate(c_cells.tolist()):
            left, right = max(col0, cc * c), min(col0 + width_px, (cc + 1) * c)
            br, bc = off_r[i, j] + top - cr * c, off_c[i, j] + left - cc * c
            out[top - row0:bottom - row0, left - col0:right - col0] = bank[br:br + bottom - top, bc:bc + right - left]
    return out


def tile_orientation(seed: int, row0: int, col0: int) -> int:
    """One of the 8 orientations of the square (0-3: quarter turns, 4-7: the same after a mirror) for the
    tile at global pixel (row0, col0): a hash of seed and position, so every process picks the same."""
    with np.errstate(over="ignore"):
        z = splitmix64(np.uint64(seed & 0xFFFFFFFF) * M1 + np.uint64(row0 & 0xFFFFFFFF) * GOLD
                       + np.uint64(col0 & 0xFFFFFFFF) * M2 + GOLD)
    return int(z >> np.uint64(61))  # top 3 bits


def orient(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` (..., n, n) turned by ``k % 4`` quarter turns, mirrored first when ``k >= 4``."""
    if k >= 4:
        a = a[..., ::-1]
    return np.rot90(a, k % 4, axes=(-2, -1))
