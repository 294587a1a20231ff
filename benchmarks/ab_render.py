"""Interleaved A/B timing of a render: the working tree against another git revision.

This VM's speed drifts by +-20 % within minutes, more than most changes are worth, so one benchmark run
before and one after a change says little. This script alternates fresh processes of the two trees
(base, new, base, new, ...); each renders the same area once cold and ``--warm`` times warm, then times the
bare generator on the same tiles, so every round gives a paired ratio for both trees under nearly the
same machine load. It prints the per-round figures and their medians.

    .venv/bin/python benchmarks/ab_render.py --base HEAD~2 --rounds 5 [--km2 1] [--warm 5] [--json out.json]
    .venv/bin/python benchmarks/ab_render.py --base HEAD --new-kw compression=zstd   # two settings, one tree

The base revision is checked out with ``git worktree`` into a temporary folder (removed at the end) and
imported through ``PYTHONPATH``, so both trees use this checkout's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, statistics, sys, time
sys.path.insert(0, {bench!r})
import geogan
from bench import _town_bbox, generator_stats
from geogan.api import sample_osm_path
try:
    from geogan.pipeline import CPU_BATCH_TILES
except ImportError:  # trees before session 9 called that module geogan.render
    from geogan.render import CPU_BATCH_TILES
from geogan.zoo import resolve_model
try:
    resolve_model("fast"); MODEL = "fast"  # the neural generator
except Exception:
    MODEL = "default"  # trees before the texture-bank default named it so
osm, bbox = str(sample_osm_path()), _town_bbox({km2})
kw = dict(osm=osm, bbox=bbox, out_dir={out!r}, model=MODEL, overwrite=True, force=True, **{extra})
t = time.perf_counter(); r = geogan.render(**kw); cold = time.perf_counter() - t
warm, cpu = [], []
for _ in range({warm}):
    t, c = time.perf_counter(), time.process_time()
    geogan.render(**kw)
    warm.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
gen = r.tiles * generator_stats(MODEL, batch=CPU_BATCH_TILES, reps={gen_reps})["seconds_per_tile"]
print(json.dumps(dict(tree=geogan.__file__, cold_s=cold, warm_s=statistics.median(warm),
                      warm_cpu_s=statistics.median(cpu), generator_s=gen)))
"""


def run_tree(pythonpath: str | None, km2: float, warm: int, out: Path, extra: dict | None = None,
             gen_reps: int = 30) -> dict:
    """One fresh process of the tree at ``pythonpath`` (None: this checkout); ``extra``: more render() keywords;
    ``gen_reps``: timed calls of the bare generator (bench.generator_stats)."""
    code = CHILD.format(bench=str(REPO / "benchmarks"), km2=km2, out=str(out), warm=warm, extra=repr(extra or {}),
                        gen_reps=int(gen_reps))
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                       cwd=tempfile.gettempdir())  # not the repo: its geogan/ would shadow PYTHONPATH
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["cold_ratio"] = res["generator_s"] / res["cold_s"]
    res["warm_ratio"] = res["generator_s"] / res["warm_s"]
    return res


def _render_kw(text: str) -> dict:
    """``"compression=zstd,seed=3"`` -> ``{"compression": "zstd", "seed": 3}`` (values: Python literals, else strings)."""
    import ast

    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise argparse.ArgumentTypeError(f"'{item}' is not KEY=VALUE")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--km2", type=float, default=1.0)
    ap.add_argument("--warm", type=int, default=5, help="warm renders per process (their median counts; >= 1)")
    ap.add_argument("--gen-reps", type=int, default=30, help="timed bare-generator calls per process (>= 1)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--base-kw", type=_render_kw, default={}, metavar="K=V,...",
                    help="render() keywords for the base tree only, e.g. compression=zstd (settings A/B: --base HEAD)")
    ap.add_argument("--new-kw", type=_render_kw, default={}, metavar="K=V,...",
                    help="render() keywords for the working tree only")
    args = ap.parse_args()
    if args.warm < 1 or args.rounds < 1 or args.gen_reps < 1:
        ap.error("--warm, --rounds and --gen-reps must be at least 1")
    keys = ("cold_ratio", "warm_ratio", "cold_s", "warm_s", "warm_cpu_s", "generator_s")
    rounds: dict[str, list[dict]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="geogan-ab-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.base],
                       check=True)
        try:
            for i in range(args.rounds):
                for name, path, extra in (("base", str(tree), args.base_kw), ("new", None, args.new_kw)):
                    res = run_tree(path, args.km2, args.warm, Path(tmp) / "out", extra, args.gen_reps)
                    rounds[name].append(res)
                    print(f"round {i + 1} {name:4s} " + "  ".join(f"{k} {res[k]:.3f}" for k in keys), flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in keys} for name, runs in rounds.items()}
    for name, m in medians.items():
        print(f"median {name:4s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "km2": args.km2, "base_kw": args.base_kw,
                                         "new_kw": args.new_kw, "rounds": rounds,
                                         "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
