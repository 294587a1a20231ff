"""Pictures for the README: a render of the sample town and a validation grid of the default model.

    .venv/bin/python scripts/make_docs_images.py [--pairs ../shared/data/landcoverai-pairs] [--model default]

Writes docs/sample_town.jpg (class map | synthetic aerial, downscaled) and, when --pairs is given,
docs/validation_grid.jpg (rows of: input labels | generated | real photo) for validation pairs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image

import geogan
from geogan.classes import load_schema
from geogan.infer import load_model

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _palette_image(classes: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in load_schema().classes:
        lut[c.id] = c.color
    return lut[classes]


def sample_town(model: str, width_px: int = 1400) -> Path:
    with tempfile.TemporaryDirectory() as d:
        res = geogan.render(out_dir=d, model=model, seed=0)
        aerial = rasterio.open(res.aerial).read().transpose(1, 2, 0)
        classes = _palette_image(rasterio.open(res.classes).read(1))
    both = np.concatenate([classes, np.full((classes.shape[0], 16, 3), 255, np.uint8), aerial], 1)
    im = Image.fromarray(both)
    im = im.resize((width_px, int(im.height * width_px / im.width)), Image.LANCZOS)
    out = DOCS / "sample_town.jpg"
    im.save(out, quality=85)
    return out


def validation_grid(pairs: Path, model: str, n: int = 6) -> Path:
    from geogan.training.pairs import PairSet, load_label_map
    loaded = load_model(model, load_schema(), "cpu")
    lm = load_label_map("landcoverai")
    val = PairSet.load(pairs, lm, "val")
    idx = np.linspace(0, len(val) - 1, n).astype(int)
    x, real = val.batch(idx, np.random.default_rng(0), flip=False)
    with torch.inference_mode():
        z = torch.from_numpy(np.random.default_rng(1).standard_normal((n, 1, *x.shape[2:])).astype(np.float32))
        fake = loaded.module(x, noise=z)[:, :3].clamp(-1, 1)
    colours = np.array([(255, 255, 255), (214, 39, 40), (20, 110, 40), (31, 119, 220), (0, 0, 0)], np.uint8)
    to_u8 = lambda t: ((t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    rows = [np.concatenate([colours[x[i].argmax(0).numpy()], to_u8(fake[i]), to_u8(real[i])], 1) for i in range(n)]
    out = DOCS / "validation_grid.jpg"
    grid = Image.fromarray(np.concatenate(rows, 0))  # n*256 x 768
    grid.resize((grid.width * 2 // 3, grid.height * 2 // 3), Image.LANCZOS).save(out, quality=85)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    DOCS.mkdir(exist_ok=True)
    print("wrote", sample_town(args.model))
    if args.pairs:
        print("wrote", validation_grid(args.pairs, args.model))


if __name__ == "__main__":
    main()
