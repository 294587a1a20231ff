"""The README's realism figure: held-out LandCover.ai tiles, columns real photo | default | fast | labels.

    .venv/bin/python benchmarks/realism_figure.py --pairs ../shared/data/landcoverai-pairs --first 896 \
        --out docs/validation_grid.jpg

Tiles are the held-out pairs (numbered >= --first) chosen evenly among those with less than 90 % water (the
set is mostly lake), each generated as its own render (seed = tile index), as ``geogan evaluate`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from geogan.evaluate import generate_for, load_generator, split_number, to_uint8_images
from geogan.training.pairs import PairSet, load_label_map

PALETTE = np.array([[200, 200, 150], [220, 40, 40], [30, 120, 30], [40, 80, 200], [128, 128, 128]], np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--first", type=int, default=None)
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--model", action="append", default=None, help="models for the middle columns")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    models = args.model or ["default", "fast"]
    lm = load_label_map("landcoverai")
    val_from = split_number(args.pairs, val_from=args.first)
    data = PairSet.load(args.pairs, lm, "val", val_from)
    water = lm.classes.index("water")
    land = np.flatnonzero((data.labels == water).mean((1, 2)) < 0.9)
    pick = land[np.linspace(0, len(land) - 1, args.tiles).round().astype(int)]
    columns = [data.images[pick]]
    for name in models:
        gen = load_generator(name, args.pairs, lm, val_from)
        sub = PairSet(data.images[pick], data.labels[pick], lm, [data.numbers[i] for i in pick])
        columns.append(to_uint8_images(generate_for(gen, sub, len(pick), seed=0)[1]))
    columns.append(PALETTE[data.labels[pick]])
    gap = np.full((256, 4, 3), 255, np.uint8)
    rows = [np.concatenate(sum(([c[i], gap] for c in columns), [])[:-1], 1) for i in range(len(pick))]
    half = [np.concatenate(rows[k::2], 0) for k in (0, 1)]
    grid = np.concatenate([half[0], np.full((half[0].shape[0], 16, 3), 255, np.uint8), half[1]], 1)
    img = Image.fromarray(grid)
    img = img.resize((img.width * 3 // 5, img.height * 3 // 5), Image.Resampling.LANCZOS)
    img.save(args.out, quality=88)
    print(f"wrote {args.out} ({img.width}x{img.height}; columns: real, {', '.join(models)}, labels; "
          f"pairs {[data.numbers[i] for i in pick]})")


if __name__ == "__main__":
    main()
