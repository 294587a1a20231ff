"""Train the segmenter that reads style-reference photos (``geogan.style_reference.STYLE_SEGMENTER``) on both
shared pair sets: LandCover.ai (Poland) and Recife (Brazil, read with LandCover.ai's five classes by the
``recife_landcoverai`` label map), so it reads the per-class colours of photos like either.

The FCN-score segmenter (``segmenter_landcoverai``, ``geogan train-segmenter``) stays LandCover.ai-only: the
FCN-score is measured on LandCover.ai pairs. Each set keeps its own split (the highest 12.5 % of its pair
numbers never trained or selected on; its last 64 training pairs select the checkpoint). Resumable:

    .venv/bin/python benchmarks/train_style_segmenter.py --out /work/runs/style/seg/segmenter_style \
        --run-dir /work/runs/style/seg/run --init geogan/data/models/segmenter_landcoverai \
        --steps 3000 --minutes 40 [--resume]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geogan.training.segmenter_fit import FitConfig, fit_segmenter, parse_class_probs  # noqa: E402

LANDCOVERAI = ROOT.parent / "shared/data/landcoverai-pairs"
RECIFE = ROOT.parent / "shared/data/recife-pairs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--init", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--crop-px", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--class-probs", default="0.2,0.25,0.2,0.15,0.2")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = FitConfig(steps=args.steps, batch=args.batch, crop_px=args.crop_px, lr=args.lr,
                    class_probs=parse_class_probs(args.class_probs),
                    max_seconds=args.minutes * 60 if args.minutes else None)
    command = ".venv/bin/python benchmarks/train_style_segmenter.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = fit_segmenter(LANDCOVERAI, args.out, args.run_dir, cfg, resume=args.resume, init=args.init,
                        label_map="landcoverai", command=command, also=((RECIFE, "recife_landcoverai"),))
    print(f"wrote {out.with_suffix('.safetensors')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
