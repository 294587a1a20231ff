"""Client peak RSS of a worker-written Dask render (``--blocks-out``, geogan.blocks) as the area grows.

    .venv/bin/python benchmarks/blocks_rss.py --json benchmarks/results/blocks_rss.json
        [--areas 1,100] [--gsd 2] [--model cheap|default|PATH] [--town-everywhere] [--pixels-too]

Starts one LocalCluster (2 one-thread worker processes) in this process and renders each area in a fresh
client process that connects to it with ``scheduler=``, so the client's peak RSS (``ru_maxrss``) is the
client's alone: planning, the features it reads and sends once, the blocks' records, the index. Areas are
squares centred on the sample town (about 1 km2 of features amid open ground, ``fill="background"``), or with
``--town-everywhere`` the town repeated over the whole area (benchmarks/bench.py ``_synthetic_town``: the
client's features then grow with the area). ``--model cheap`` (the default): the default model's card and
architecture at a quarter of its width (ngf 4, random weights) with its native GSD set to ``--gsd``, so
the run measures the pipeline around the generator, not the generator. ``--pixels-too``: also the largest
area through the Dask front that sends the pixels to the client (no ``blocks_out``), for contrast. Reports
JSON: per area, the client's peak RSS, wall seconds, output megapixels and blocks; the workers' peak RSS;
and ``rss_ratio`` (largest area / smallest).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def cheap_model(stem: Path, gsd_m: float) -> Path:
    """The default model's card and architecture at ngf 4 with random weights, native GSD ``gsd_m``."""
    import torch

    from geogan.models.checkpoint import save_generator
    from geogan.models.registry import build_generator
    from geogan.zoo import builtin_model_dir

    card = json.loads((builtin_model_dir() / "default.json").read_text())
    params = {**card["arch_params"], "ngf": 4}
    card = {**card, "arch_params": params, "name": "cheap-random", "gsd_m": float(gsd_m)}
    for key in ("weights_sha256", "postprocess", "benchmarks", "metrics"):
        card.pop(key, None)
    torch.manual_seed(0)
    save_generator(build_generator(card["arch"], params).eval(), card, stem)
    return stem.with_suffix(".json")


def client_run(args: argparse.Namespace) -> None:
    """In the client process: one render, then its numbers as a JSON line."""
    import geogan

    kw = json.loads(args.client)
    t = time.perf_counter()
    result = geogan.render(**kw)
    secs = time.perf_counter() - t
    blocks = len(json.loads((Path(kw["out_dir"]) / "stac.json").read_text())["features"]) \
        if kw.get("blocks_out") else None
    print(json.dumps({"seconds": round(secs, 1), "client_maxrss_mb": round(_maxrss_mb(), 1),
                      "output_mp": round(result.grid.width * result.grid.height / 1e6, 2),
                      "shape": list(result.grid.shape_yx), "blocks": blocks}))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_in_client(kw: dict) -> dict:
    p = subprocess.run([sys.executable, __file__, "--client", json.dumps(kw)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"client render failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _request(area_km2: float, args, model: str, osm: Path, tmp: Path, scheduler: str, blocks: bool) -> dict:
    from bench import _town_bbox

    name = f"{area_km2:g}km2" + ("" if blocks else "-pixels")
    kw = dict(osm=str(osm), bbox=list(_town_bbox(area_km2)), gsd_m=args.gsd, model=model, out_dir=str(tmp / name),
              scheduler=scheduler, fill="background", overwrite=True, force=True)
    if blocks:
        kw["blocks_out"] = str(tmp / f"{name}-blocks")
    return kw


def _worker_maxrss_mb(client) -> dict:
    return {k: round(v, 1) for k, v in client.run(_maxrss_mb).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--areas", default="1,100", help="square km, comma-separated; the first is the baseline")
    ap.add_argument("--gsd", type=float, default=2.0, help="output ground metres per pixel")
    ap.add_argument("--model", default="cheap", help="cheap (see above), a zoo name or a model card path")
    ap.add_argument("--town-everywhere", action="store_true", help="the sample town repeated over each area")
    ap.add_argument("--pixels-too", action="store_true", help="also the largest area without --blocks-out")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client_run(args)
    from dask.distributed import Client, LocalCluster

    from geogan.api import sample_osm_path
    areas = [float(a) for a in args.areas.split(",")]
    res: dict = {"gsd_m": args.gsd, "model": args.model, "town_everywhere": args.town_everywhere, "workers": 2,
                 "areas": {}}
    with tempfile.TemporaryDirectory(prefix="geogan-blocks-rss-") as d, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        tmp = Path(d)
        model = str(cheap_model(tmp / "cheap", args.gsd)) if args.model == "cheap" else args.model
        for area in areas:
            osm = sample_osm_path()
            if args.town_everywhere:
                from bench import _synthetic_town
                osm = _synthetic_town(area, tmp / f"town_{area:g}.osm")
            row = render_in_client(_request(area, args, model, osm, tmp, cluster.scheduler_address, True))
            res["areas"][f"{area:g}"] = row
            print(f"{area:g} km2: {row}", file=sys.stderr)
        if args.pixels_too:
            osm = tmp / f"town_{areas[-1]:g}.osm" if args.town_everywhere else sample_osm_path()
            res["pixels_to_client"] = render_in_client(_request(areas[-1], args, model, osm, tmp,
                                                                cluster.scheduler_address, False))
        res["worker_maxrss_mb"] = _worker_maxrss_mb(client)
    first, last = res["areas"][f"{areas[0]:g}"], res["areas"][f"{areas[-1]:g}"]
    res["rss_ratio"] = round(last["client_maxrss_mb"] / first["client_maxrss_mb"], 3)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
