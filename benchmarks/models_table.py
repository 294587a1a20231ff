"""The README's model comparison: the default model vs reference pix2pix vs the mean-colour baseline.

    .venv/bin/python benchmarks/models_table.py --pairs ../shared/data/landcoverai-pairs \
        --model default --model /work/runs/pix2pix_ref/export/pix2pix_ref --model baseline:mean-colour \
        --json benchmarks/results/models_landcoverai.json

Every model is evaluated by `geogan evaluate`'s code on the same held-out pairs (the highest-numbered 12.5 %),
with the same segmenter (FCN-score, KID on its features), in one process, one after the other, so the
throughput column compares models under the same machine load. Prints a Markdown table and writes every
metric to --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from geogan.evaluate import evaluate_model

COLUMNS = (("model", "model", "{}"), ("fcn_ratio", "FCN ratio ↑", "{:.3f}"),
           ("fcn_miou_generated", "FCN mIoU gen ↑", "{:.3f}"), ("kid", "KID ↓ (seg. features)", "{:.4f}"),
           ("fid", "FID ↓ (seg. features)", "{:.2f}"), ("l1", "L1 ↓", "{:.3f}"), ("ssim", "SSIM ↑", "{:.3f}"),
           ("lattice_128", "lattice share ↓", "{:.3f}"), ("generator_mp_s", "MP/s ↑", "{:.2f}"), ("model_size_mb", "size (MB)", "{:.1f}"))


def markdown_table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for res in results:
        cells = [fmt.format(res[key]) if res.get(key) is not None else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--model", action="append", required=True, help="zoo name, model path or baseline:mean-colour")
    ap.add_argument("--label-map", default="landcoverai")
    ap.add_argument("--segmenter", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for ref in args.model:
        t0 = time.perf_counter()
        res = evaluate_model(args.pairs, ref, segmenter=args.segmenter, label_map=args.label_map)
        res.pop("fcn_iou_generated_per_class", None)
        res["lattice_128"] = res.get("lattice_share_generated", {}).get("128")  # all lattices up to 128 px
        results.append(res)
        print(f"{res['model']}: fcn_ratio {res['fcn_ratio']:.3f} kid {res['kid']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    table = markdown_table(results)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} torch threads", "pairs": str(args.pairs), "label_map": args.label_map}
        args.json.write_text(json.dumps({"meta": meta, "results": results, "table": table}, indent=2))


if __name__ == "__main__":
    main()
