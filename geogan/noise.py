"""Position-hashed randomness: values that depend only on (seed, global pixel position).

Tiles, strips and Dask blocks that overlap see exactly the same numbers, which keeps renders
seamless and repeatable. SplitMix64 finalisers on uint64 arrays (wrapping arithmetic).
"""

from __future__ import annotations

import math

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


def hashed_noise(seed: int, row0: int, col0: int, size_px: int) -> np.ndarray:
    """Standard-normal noise (size, size) that depends only on seed and global pixel position."""
    with np.errstate(over="ignore"):
        rows = (np.arange(size_px, dtype=np.int64) + row0).astype(np.uint64)
        cols = (np.arange(size_px, dtype=np.int64) + col0).astype(np.uint64)
        key = np.uint64(seed & 0xFFFFFFFF) * GOLD
        z = splitmix64(key + rows[:, None] * M2 + cols[None, :] * GOLD + M1)
    u1 = ((z >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)
    u2 = ((z & np.uint64(0xFFFFFF)).astype(np.float64) + 0.5) / float(1 << 24)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)).astype(np.float32)
