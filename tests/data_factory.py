"""Tiny synthetic training data made by the tests (never ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from geogan.training.pairs import VAL_FROM_NUMBER

COLOURS = {0: (200, 200, 150), 45: (180, 60, 60), 74: (30, 90, 30), 176: (40, 60, 120), 255: (90, 90, 90)}


def make_pairs(dir_: Path, n: int = 12, size: int = 64, seed: int = 1) -> Path:
    """LandCover.ai-style side-by-side pairs whose colour is a function of the class, half train, half val."""
    rng = np.random.default_rng(seed)
    dir_.mkdir(parents=True)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for v, c in COLOURS.items():
        lut[v] = c
    for i in range(n):
        lab = np.zeros((size, size), dtype=np.uint8)
        for v in (45, 74, 176, 255):
            y, x = rng.integers(0, size - size // 3, 2)
            lab[y:y + size // 3, x:x + size // 3] = v
        rgb = np.clip(lut[lab] + rng.normal(0, 5, (size, size, 3)), 0, 255).astype(np.uint8)
        pair = np.concatenate([rgb, np.repeat(lab[..., None], 3, -1)], axis=1)
        number = i if i < n // 2 else VAL_FROM_NUMBER + i
        Image.fromarray(pair).save(dir_ / f"pair_{number:04d}.png")
    return dir_
