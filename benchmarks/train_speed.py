"""Training speed per architecture on this machine (the README's steps/second table).

    .venv/bin/python benchmarks/train_speed.py --pairs ../shared/data/landcoverai-pairs pix2pix unet spade

Each architecture uses the project's recipe (recipe_for: batch size, discriminator, losses) on 256 px
pairs; 2 warm-up steps, then the mean of --steps timed steps (one step = D update + G update).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from geogan.training.pairs import PairSet, load_label_map
from geogan.training.ratio import FixedRatio
from geogan.training.trainer import Trainer, recipe_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("archs", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    lm = load_label_map("landcoverai")
    full = PairSet.load(args.pairs, lm, "train")
    data = PairSet(full.images[:64], full.labels[:64], lm, full.numbers[:64])
    res = {}
    for arch in args.archs:
        with tempfile.TemporaryDirectory() as d:
            t = Trainer(recipe_for(arch, len(lm.classes)), data, Path(d), ratio=FixedRatio(1, 1))
            for _ in range(2):
                t.step()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                t.step()
            dt = (time.perf_counter() - t0) / args.steps
        res[arch] = {"seconds_per_step": round(dt, 3), "steps_per_s": round(1 / dt, 3), "batch": t.recipe.batch,
                     "images_per_s": round(t.recipe.batch / dt, 3)}
        print(arch, res[arch], flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
