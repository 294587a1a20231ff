"""FID on the segmenter's features at half the held-out set, against the real-vs-real floor at the same size.

    .venv/bin/python benchmarks/fid_floor.py --pairs ../shared/data/landcoverai-pairs --model default --model fast --coins 4 \
        --json benchmarks/results/fid_floor_$(date +%F).json

The held-out photos (numbered >= the split) are cut into halves A and B by a seeded coin per consecutive pair of
numbers (as ``realism.py``'s reference row). The floor is FID(real A, real B); each model's row is
FID(real A, generated B), generated for B's label maps with seed = the coin's seed: the same sample sizes on both
sides, so FID's small-sample bias is the same. With 64 tiles a side one split is noisy (the floor alone ranges
9.4-13.2 over four coins), so ``--coins N`` repeats it with coin seeds 0..N-1 and reports each model's mean ratio
to the floor of the same split. The target: a model's FID within 2x of the floor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from geogan.evaluate import (_segment, default_segmenter_path, generate_for, load_generator, load_segmenter,
                             split_number, to_tensor_image)
from geogan.metrics import fid
from geogan.training.pairs import PairSet, load_label_map


def halves(n: int, coin_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of halves A and B: one of each consecutive pair of photos, by a seeded coin."""
    coin = np.random.default_rng(coin_seed).integers(0, 2, n // 2)
    return (np.array([2 * j + c for j, c in enumerate(coin)]), np.array([2 * j + 1 - c for j, c in enumerate(coin)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--coins", type=int, default=1, help="splits (coin seeds 0..N-1) to average over")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--segmenter", type=Path, default=None, help="features' segmenter stem (default: the shipped one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_label_map("landcoverai")
    val_from = split_number(args.pairs)
    data = PairSet.load(args.pairs, lm, "val", val_from)
    net, _ = load_segmenter(args.segmenter or default_segmenter_path())
    _, feats = _segment(net, to_tensor_image(data.images))
    gens = {name: load_generator(name, args.pairs, lm, val_from) for name in args.model}
    rows = [{"model": "real vs real", "fid": []}] + [{"model": name, "fid": [], "ratio_to_floor": []} for name in gens]
    for coin_seed in range(args.coins):
        a, b = halves(len(data), coin_seed)
        floor = fid(feats[a], feats[b])
        rows[0]["fid"].append(floor)
        sub = PairSet(data.images[b], data.labels[b], lm, [data.numbers[i] for i in b])
        for row, gen in zip(rows[1:], gens.values()):
            _, f_g = _segment(net, generate_for(gen, sub, len(b), seed=coin_seed)[1])
            row["fid"].append(fid(feats[a], f_g))
            row["ratio_to_floor"].append(row["fid"][-1] / floor)
    for r in rows:
        for key in ("fid", "ratio_to_floor"):
            if key in r:
                r[f"{key}_mean"] = float(np.mean(r[key]))
        print(f"{r['model']}: FID {r['fid_mean']:.2f}" + (f" ({r['ratio_to_floor_mean']:.2f}x the floor of its split, "
              f"splits {', '.join(f'{v:.2f}' for v in r['ratio_to_floor'])})" if "ratio_to_floor" in r else
              f" (splits {', '.join(f'{v:.2f}' for v in r['fid'])})"))
    if args.json:
        args.json.write_text(json.dumps({"pairs_per_half": len(data) // 2, "split": f"pairs numbered >= {val_from}",
                                         "coins": args.coins, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
