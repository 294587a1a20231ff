"""Realism of generators on held-out real pairs: the two-sample classifier test and tile-locked patterns.

The README's realism rows (see docs/realism.md for the metric and its protocol):

    B=benchmarks/results/realism_$(date +%F).json
    .venv/bin/python benchmarks/realism.py --pairs ../shared/data/landcoverai-pairs --first 896 \
        --model default --model baseline:mean-colour --reference --threads 1 --json $B
    .venv/bin/python benchmarks/realism.py --pairs ../shared/data/recife-pairs --label-map recife --first 1622 \
        --model recife --model baseline:mean-colour --reference --threads 1 --json $B --append

One checkpoint of a running training job (its exported card):

    .venv/bin/python benchmarks/realism.py --pairs ../shared/data/landcoverai-pairs --first 896 \
        --model /work/runs/x/export/default.json --threads 1 --json /tmp/x_realism.json

Each --model row is ``geogan.evaluate.evaluate_realism`` on the pairs numbered >= --first (default: the
highest 12.5 %, as in training); ``baseline:mean-colour`` paints each class its mean colour in the pairs below
--first. ``--reference`` adds the real-vs-real row: held-out photos against held-out photos (of each two
consecutive ones, one on each side by a seeded coin) under the same protocol (C2ST should be about 0.5,
periodic ratios about 1). Prints a Markdown table;
--json writes every metric (``--append`` merges the rows into an existing file, replacing rows of the same
model, pairs and split).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from geogan.errors import GeoganError
from geogan.evaluate import evaluate_realism, split_number
from geogan.realism import C2stSettings, real_vs_real, torch_threads
from geogan.training.pairs import PairSet, load_label_map

REFERENCE_NAME = "real vs real (two halves)"


def reference_row(pairs: Path, label_map: str, first: int | None, max_pairs: int | None,
                  settings: C2stSettings, threads: int | None) -> dict:
    """The real-vs-real row: of each two consecutive held-out photos one on each side (seeded coin; same protocol)."""
    lm = load_label_map(label_map)
    val_from = split_number(pairs, val_from=first)
    data = PairSet.load(pairs, lm, "val", val_from)
    n = len(data) if max_pairs is None else min(max_pairs, len(data))
    res = real_vs_real(data.images[:n], settings, threads)
    return {"model": REFERENCE_NAME, "pairs": n, "pairs_dir": str(pairs), "label_map": lm.name,
            "split": f"pairs numbered >= {val_from}", **res}


def fmt(value, spec: str = "{:.3f}") -> str:
    return "-" if value is None else spec.format(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | data | pairs | C2ST acc. ↓ | C2ST acc., 4x blur ↓ "
             "| periodic ratio 4 / 8 / 16 / 32 px ↓ |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ratios = " / ".join(fmt(r["periodic_ratio"].get(p), "{:.2f}") for p in ("4", "8", "16", "32"))
        acc = " | ".join(f"{fmt(r.get(k))} ± {fmt(r.get(k + '_stderr'))}"
                         for k in ("c2st_accuracy", "c2st_accuracy_blur4"))
        lines.append(f"| {r['model']} | {r['label_map']} ({r['split']}) | {r['pairs']} | {acc} | {ratios} |")
    return "\n".join(lines)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with rows of the same (model, pairs_dir, split) replaced by ``new``, then the other new rows."""
    def key(r: dict) -> tuple:
        return r["model"], r["pairs_dir"], r["split"]

    fresh = {key(r): r for r in new}
    kept = [fresh.pop(key(r), r) for r in old]
    return kept + [r for r in new if key(r) in fresh]


def write_json(path: Path, rows: list[dict], meta: dict, append: bool) -> list[dict]:
    if append and path.is_file():
        rows = merge_rows(json.loads(path.read_text())["results"], rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({"meta": meta, "results": rows, "table": markdown_table(rows)}, indent=2))
    tmp.replace(path)
    return rows


def main() -> None:
    try:
        run()
    except GeoganError as exc:  # bad input: one line, exit 2, no output file
        raise SystemExit(f"error: {exc}") from None


def run() -> None:
    ap = argparse.ArgumentParser(prog="benchmarks/realism.py", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[], help="zoo name, card path or baseline:mean-colour")
    ap.add_argument("--reference", action="store_true", help="add the real-vs-real row")
    ap.add_argument("--label-map", default="landcoverai")
    ap.add_argument("--first", type=int, default=None, help="first held-out pair number (default: highest 12.5 %%)")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="generator noise seed")
    ap.add_argument("--steps", type=int, default=C2stSettings.steps, help="classifier steps per run")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--append", action="store_true", help="merge the rows into an existing --json file")
    args = ap.parse_args()
    if not args.model and not args.reference:
        ap.error("give at least one --model or --reference")
    settings = C2stSettings(steps=args.steps)
    rows = []
    for ref in args.model:
        t0 = time.perf_counter()
        res = evaluate_realism(args.pairs, ref, label_map=args.label_map, max_pairs=args.max_pairs, seed=args.seed,
                               val_from=args.first, settings=settings, threads=args.threads)
        res["seconds"] = time.perf_counter() - t0
        rows.append(res)
        print(f"{res['model']}: c2st {res['c2st_accuracy']:.3f}, blur4 {res['c2st_accuracy_blur4']:.3f} "
              f"({res['seconds']:.0f} s)", flush=True)
    if args.reference:
        t0 = time.perf_counter()
        rows.append(reference_row(args.pairs, args.label_map, args.first, args.max_pairs, settings, args.threads))
        rows[-1]["seconds"] = time.perf_counter() - t0
        print(f"{REFERENCE_NAME}: c2st {rows[-1]['c2st_accuracy']:.3f} ({rows[-1]['seconds']:.0f} s)", flush=True)
    if args.json:
        with torch_threads(args.threads):
            threads = torch.get_num_threads()
        meta = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
                f"{threads} torch threads", "command": "benchmarks/realism.py (see its docstring)"}
        rows = write_json(args.json, rows, meta, args.append)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
