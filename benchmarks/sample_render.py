"""The quick start's render, timed: `geogan render --out DIR` (the bundled sample town, the default model) in a
fresh process, a few times; reports wall and CPU seconds (median) and the machine's load.

    .venv/bin/python benchmarks/sample_render.py --repeat 3 --json benchmarks/results/sample_render_$(date +%F).json
    .venv/bin/python benchmarks/sample_render.py --model fast --repeat 3 --json ... --append
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_render(model: str, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "geogan.cli", "render", "--out", str(out), "--model", model,
                        "--overwrite"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--append", action="store_true", help="add to the rows already in --json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_render(args.model, Path(tmp) / "out") for _ in range(args.repeat)]
    row = {"model": args.model, "repeat": args.repeat, "wall_s": statistics.median(r["wall_s"] for r in runs),
           "cpu_s": statistics.median(r["cpu_s"] for r in runs), "runs": runs, "load_avg_1min": os.getloadavg()[0],
           "cpus": os.cpu_count(), "machine": platform.machine(), "date": str(date.today())}
    print(json.dumps(row, indent=1))
    if args.json:
        rows = json.loads(args.json.read_text())["results"] if args.append and args.json.exists() else []
        rows = [r for r in rows if r["model"] != args.model] + [row]
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
