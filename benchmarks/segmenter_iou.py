"""Per-class IoU of FCN-score segmenters on the *real* photos of the evaluation split.

    .venv/bin/python benchmarks/segmenter_iou.py --pairs ../shared/data/landcoverai-pairs \
        geogan/data/models/segmenter_landcoverai [OTHER_STEM ...] [--json OUT.json]

The split is the one `geogan evaluate` scores on (the highest 12.5 % of the pair numbers: 896..1023 for the
1024 LandCover.ai pairs), on whole tiles; the numbers equal `geogan evaluate`'s ``fcn_iou_real_per_class``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geogan.evaluate import load_segmenter  # noqa: E402
from geogan.training.datasets import val_from_number  # noqa: E402
from geogan.training.pairs import PairSet, list_pairs, load_label_map  # noqa: E402
from geogan.training.segmenter_fit import segmenter_iou  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("segmenters", nargs="+", type=Path, help="segmenter stems (.json + .safetensors)")
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--label-map", default="landcoverai")
    ap.add_argument("--val-fraction", type=float, default=0.125)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = load_label_map(args.label_map)
    val_from = val_from_number(list_pairs(args.pairs, "all"), args.val_fraction)
    data = PairSet.load(args.pairs, lm, "val", val_from)
    rows = {}
    for stem in args.segmenters:
        net, card = load_segmenter(stem)
        remap = np.array([card["classes"].index(c) for c in lm.classes], dtype=np.uint8)  # pair id -> segmenter id
        t0 = time.perf_counter()
        m, iou = segmenter_iou(net, data.images, remap[data.labels], len(card["classes"]))
        rows[str(stem)] = {"miou": round(m, 4), "iou_per_class": {c: round(float(v), 4) for c, v in
                                                                  zip(card["classes"], iou)},
                           "pairs": len(data), "split": f"pairs numbered >= {val_from}",
                           "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{stem}: mIoU {m:.4f} " + " ".join(f"{c} {v:.4f}" for c, v in zip(card["classes"], iou)), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
