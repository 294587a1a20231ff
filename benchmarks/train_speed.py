"""Training speed per architecture on this machine (the README's steps/second table).

    .venv/bin/python benchmarks/train_speed.py --pairs ../shared/data/landcoverai-pairs pix2pix unet spade
    python3 benchmarks/train_speed.py --synthetic 64 --device cuda --batch 32 unet   # on a GPU machine

Each architecture uses the project's recipe (recipe_for: batch size, discriminator, losses) on 256 px
pairs; 2 warm-up steps, then the mean of --steps timed steps (one step = D update + G update).
``--synthetic N``: N generated 256 px pairs instead of a pairs folder (where shared/ is not at hand);
speed does not depend on the pictures. ``--device cuda``: AMP and channels-last, as ``geogan train``.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from geogan.training.pairs import PairSet, load_label_map
from geogan.training.ratio import FixedRatio
from geogan.training.trainer import Trainer, recipe_for


def main() -> None:
    ap = argparse.ArgumentParser()
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", type=Path)
    source.add_argument("--synthetic", type=int, metavar="N", help="N generated 256 px pairs")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (AMP and channels-last)")
    ap.add_argument("--batch", type=int, help="override the recipe's batch size")
    ap.add_argument("archs", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    lm = load_label_map("landcoverai")
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from data_factory import make_pairs
            full = PairSet.load(make_pairs(Path(tmp) / "pairs", n=2 * args.synthetic, size=256), lm, "train")
        else:
            full = PairSet.load(args.pairs, lm, "train")
    data = PairSet(full.images[:64], full.labels[:64], lm, full.numbers[:64])
    cuda = args.device == "cuda"
    res = {}
    for arch in args.archs:
        overrides = {"batch": args.batch} if args.batch else {}
        with tempfile.TemporaryDirectory() as d:
            t = Trainer(recipe_for(arch, len(lm.classes), **overrides), data, Path(d), ratio=FixedRatio(1, 1),
                        device=args.device, amp=cuda, channels_last=cuda)
            for _ in range(2):
                t.step()
            sync = torch.cuda.synchronize if cuda else (lambda: None)
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                t.step()
            sync()
            dt = (time.perf_counter() - t0) / args.steps
        res[arch] = {"seconds_per_step": round(dt, 3), "steps_per_s": round(1 / dt, 3), "batch": t.recipe.batch,
                     "images_per_s": round(t.recipe.batch / dt, 3)}
        print(arch, res[arch], flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
