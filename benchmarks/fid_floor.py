"""FID on the segmenter's features at half the held-out set, against the real-vs-real floor at the same size.

    .venv/bin/python benchmarks/fid_floor.py --pairs ../shared/data/landcoverai-pairs --model default --model fast \
        --json benchmarks/results/fid_floor_$(date +%F).json

The held-out photos (numbered >= the split) are cut into halves A and B by a seeded coin per consecutive pair of
numbers (as ``realism.py``'s reference row). The floor is FID(real A, real B); each model's row is
FID(real A, generated B), generated for B's label maps: the same sample sizes on both sides, so FID's small-sample
bias is the same. The issue's target: a model's FID within 2x of the floor.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_label_map("landcoverai")
    val_from = split_number(args.pairs)
    data = PairSet.load(args.pairs, lm, "val", val_from)
    coin = np.random.default_rng(0).integers(0, 2, len(data) // 2)
    a = np.array([2 * j + c for j, c in enumerate(coin)])
    b = np.array([2 * j + 1 - c for j, c in enumerate(coin)])
    net, _ = load_segmenter(default_segmenter_path())
    _, f_a = _segment(net, to_tensor_image(data.images[a]))
    _, f_b = _segment(net, to_tensor_image(data.images[b]))
    rows = [{"model": "real vs real", "fid": fid(f_a, f_b)}]
    sub = PairSet(data.images[b], data.labels[b], lm, [data.numbers[i] for i in b])
    for name in args.model:
        gen = load_generator(name, args.pairs, lm, val_from)
        _, f_g = _segment(net, generate_for(gen, sub, len(b), seed=0)[1])
        rows.append({"model": name, "fid": fid(f_a, f_g)})
    for r in rows:
        r["ratio_to_floor"] = r["fid"] / rows[0]["fid"]
        print(f"{r['model']}: FID {r['fid']:.2f} ({r['ratio_to_floor']:.2f}x the floor)")
    if args.json:
        args.json.write_text(json.dumps({"pairs_per_half": len(b), "split": f"pairs numbered >= {val_from}",
                                         "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
