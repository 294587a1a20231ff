"""geogan benchmark: prints and writes (--json) the numbers the README quotes.

    .venv/bin/python benchmarks/bench.py --json bench.json [--model default] [--quick] [--only e2e,memory]
        [--compression deflate|zstd|jpeg]

Measures, in one run on this machine:
- generator-only throughput (output MP/s, overlap included in the cost) and end-to-end render
  throughput (OSM -> three COGs) on the same area, and their ratio: ``e2e_ratio`` for the first render of
  a fresh process, ``e2e_warm_ratio`` for its second; the ``_paired`` variants time the bare generator in
  each render's own process right after it and take the median of the per-process ratios (robust to this
  VM's drifting speed). A texture bank (``--model default``) has no generator network: its "generator" is
  the quilting of the render's own class-map strips (every ``quilt_strip`` call of the render replayed
  alone, as many at once as the render runs), so only the ``_paired`` ratios exist for it;
- peak RSS of a 1 km^2 and a 16 km^2 render at the same GSD (separate processes);
- rasterizing the class map vs gdal_rasterize of the same layers on the same grid (when installed);
- the generator's FLOP/s (torch.utils.flop_counter) vs this machine's measured fp32 matmul FLOP/s;
- the reference pix2pix (ngf=64) generator throughput, and the end-to-end render with it in place of the
  default model (`pix2pix_e2e_ratio_paired`: the pipeline around a generator of that cost);
- Dask LocalCluster (2 workers) vs single-process render time;
- the resolution pyramid (benchmarks/pyramid_bench.py): seconds and tiles per output MP at 0.5, 2 and 10 m
  and their ratios to 0.5 m, a 10 m render of 35 km2 (``pyramid``); the look of 10 m and 2 m renders vs the
  0.5 m model's averaged, FID on segmenter features against the real photos averaged (``look``, needs
  ``--pairs``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _town_bbox(area_km2: float):
    """A square bbox of area_km2 centred on the sample town (lon/lat)."""
    from geogan.api import sample_osm_path
    from geogan.sources import osm_file_bounds
    from osm_factory import metres_to_degrees

    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = (area_km2 ** 0.5) * 1000 / 2
    dx, dy = metres_to_degrees(cy)
    return (cx - half * dx, cy - half * dy, cx + half * dx, cy + half * dy)


def _synthetic_town(area_km2: float, out: Path) -> Path:
    """The sample town (about 1 km2, 400 features) repeated side by side over a larger area: a square grid of
    copies covering the area's bbox, each copy's ids offset so they stay unique. The large render then costs
    what a town of that size costs (features to read, classify, rasterize; outputs to compress), not one
    town amid open ground."""
    import math
    import re

    from geogan.api import sample_osm_path
    from geogan.sources import osm_file_bounds
    text = sample_osm_path().read_text()
    head, rest = re.split(r"<bounds [^>]*/>", text, maxsplit=1)
    body = rest[:rest.rindex("</osm>")]
    x0, y0, x1, y1 = _town_bbox(area_km2)
    tx0, ty0, tx1, ty1 = osm_file_bounds(sample_osm_path())
    nx, ny = max(1, math.ceil((x1 - x0) / (tx1 - tx0))), max(1, math.ceil((y1 - y0) / (ty1 - ty0)))
    id_step = 10 ** (len(str(max(int(v) for v in re.findall(r'(?:id|ref)="(\d+)"', body)))) + 1)
    elements: dict[str, list[str]] = {"node": [], "way": [], "relation": []}  # OSM order: nodes, ways, relations
    for k, (i, j) in enumerate((i, j) for i in range(ny) for j in range(nx)):
        dlon = (j - (nx - 1) / 2) * (tx1 - tx0)
        dlat = (i - (ny - 1) / 2) * (ty1 - ty0)
        part = re.sub(r'(id|ref)="(\d+)"', lambda m: f'{m[1]}="{int(m[2]) + k * id_step}"', body)
        part = re.sub(r'lat="([-\d.]+)"', lambda m: f'lat="{float(m[1]) + dlat:.7f}"', part)
        part = re.sub(r'lon="([-\d.]+)"', lambda m: f'lon="{float(m[1]) + dlon:.7f}"', part)
        for m in re.finditer(r'<(node|way|relation)\b[^>]*/>|<(node|way|relation)\b[^>]*>.*?</\2>', part, re.S):
            elements[m[1] or m[2]].append(m[0])
    bounds = f'<bounds minlon="{x0}" minlat="{y0}" maxlon="{x1}" maxlat="{y1}"/>'
    out.write_text(head + bounds + "\n" + "\n".join(e for kind in elements.values() for e in kind) + "\n</osm>\n")
    return out


def matmul_flops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def generator_stats(model_name: str, tile_px: int = 256, batch: int = 1, reps: int = 30) -> dict:
    """Bare generator forward passes on ``batch`` tiles, run the two ways a render can run them: one call
    at a time with all torch threads, and as concurrent single-threaded calls (geogan.infer.cpu_streams).
    Each figure is the median of ``reps`` timed calls (this VM is noisy); the faster way is the reference."""
    import threading

    from torch.utils.flop_counter import FlopCounterMode

    from geogan.classes import load_schema
    from geogan.infer import cpu_streams, load_model, torch_threads
    m = load_model(model_name, load_schema(), "cpu")
    x = torch.zeros(batch, m.n_classes, tile_px, tile_px).contiguous(memory_format=torch.channels_last)
    x[:, 0] = 1
    z = torch.randn(batch, 1, tile_px, tile_px)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            m.module(x, noise=z)
        flops = fc.get_total_flops()

    def timed_calls(n: int, times: list) -> None:
        with torch.inference_mode():
            for _ in range(n):
                t = time.perf_counter()
                m.module(x, noise=z)
                times.append(time.perf_counter() - t)

    timed_calls(min(3, reps), [])  # warm-up
    one_call: list = []
    timed_calls(reps, one_call)
    per_tile = {"one_call": float(np.median(one_call)) / batch}
    streams, threads = cpu_streams(torch.device("cpu"))
    if streams > 1:
        with torch_threads(threads):
            lists = [[] for _ in range(streams)]
            n = max(min(3, reps), reps // streams)
            workers = [threading.Thread(target=timed_calls, args=(n, lst)) for lst in lists]
            [w.start() for w in workers]
            [w.join() for w in workers]
        # time per tile with every stream busy: the median call, with `streams` calls in flight at once
        per_tile["streams"] = float(np.median([v for lst in lists for v in lst])) / (batch * streams)
    best = min(per_tile.values())
    return {"flops_per_tile": flops / batch, "seconds_per_tile": best, "flop_s": flops / batch / best,
            "tile_mp_s": tile_px * tile_px / 1e6 / best, "batch": batch, "streams": streams,
            "one_call_mp_s": tile_px * tile_px / 1e6 / per_tile["one_call"],
            "streams_mp_s": tile_px * tile_px / 1e6 / per_tile.get("streams", per_tile["one_call"])}


def pix2pix_model(stem: Path) -> Path:
    """The reference pix2pix generator (ngf 64, random weights) saved as a model geogan renders with: the default
    model's card (classes, GSD, noise input) with the paper's architecture. Its card path."""
    from geogan.models.checkpoint import save_generator
    from geogan.models.registry import build_generator
    from geogan.zoo import builtin_model_dir

    card = json.loads((builtin_model_dir() / "fast.json").read_text())
    params = {k: v for k, v in card["arch_params"].items() if k in ("in_nc", "out_nc", "noise")}
    card = {**card, "arch": "pix2pix", "arch_params": params, "name": "pix2pix-ngf64-random"}
    card.pop("weights_sha256", None)
    torch.manual_seed(0)
    save_generator(build_generator("pix2pix", params).eval(), card, stem)
    return stem.with_suffix(".json")


def pix2pix_mp_s(tile_px: int = 256, batch: int = 1, reps: int = 3) -> float:
    """The reference pix2pix generator (ngf 64, random weights: speed does not depend on them)."""
    from geogan.infer import prepare_for_inference
    from geogan.models.registry import build_generator
    g = prepare_for_inference(build_generator("pix2pix", {"in_nc": 5}), torch.device("cpu"))
    x = torch.zeros(batch, 5, tile_px, tile_px).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        g(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            g(x)
            times.append(time.perf_counter() - t)
    return batch * tile_px * tile_px / 1e6 / float(np.median(times))


def render_in_subprocess(bbox, osm: Path, out: Path, model: str, extra=(), renders: int = 1,
                         generator: bool = False, gen_reps: int = 30) -> dict:
    """``renders`` renders of the same area in one fresh process: ``seconds`` is the first (cold: the
    process's first model load, first forward pass of each shape, first GDAL/PROJ use), ``warm_seconds``
    the last (what a long-lived process such as the QGIS plugin or a Dask worker sees). ``generator``: then
    also time the bare generator in the same process (:func:`generator_stats`, ``gen_seconds_per_tile``),
    so the end-to-end / generator ratio compares timings taken under the same machine load (this VM's
    speed drifts by +-20 % within minutes). ``cpu_seconds`` / ``warm_cpu_seconds``: the same renders' process
    CPU time (all threads; less swayed than wall time by other work on the machine), ``load_1min``: the load
    average when the last render ended."""
    bank = generator and is_texture_bank(model)
    code = (  # geogan.api is imported before the timing (``import geogan`` alone no longer loads it)
        "import json, os, resource, sys, time, geogan, geogan.api, torch\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        + ("from bench import capture_quilt_calls, replay_quilt_seconds\ncalls = capture_quilt_calls()\n"
           if bank else "")
        + "secs, cpus = [], []\n"
        f"for _ in range({int(renders)}):\n"
        + ("    calls.clear()\n" if bank else "")
        + "    t, c = time.perf_counter(), time.process_time()\n"
        f"    r=geogan.render(osm={str(osm)!r}, bbox={tuple(bbox)!r}, out_dir={str(out)!r}, "
        f"model={model!r}, overwrite=True, force=True{''.join(', ' + e for e in extra)})\n"
        "    secs.append(time.perf_counter()-t); cpus.append(time.process_time()-c)\n"
        "res = {'seconds': secs[0], 'warm_seconds': secs[-1], 'cpu_seconds': cpus[0], 'warm_cpu_seconds': cpus[-1], "
        "'load_1min': os.getloadavg()[0], 'tiles': r.tiles, 'shape': r.grid.shape_yx, "
        "'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}\n"
        + ("res['gen_seconds_per_tile'] = replay_quilt_seconds(calls) / r.tiles\n" if bank else
           "from bench import generator_stats\nfrom geogan.pipeline import CPU_BATCH_TILES\n"
           f"res['gen_seconds_per_tile'] = generator_stats({model!r}, batch=CPU_BATCH_TILES, reps={int(gen_reps)})"
           "['seconds_per_tile']\n"
           if generator else "")
        + "print(json.dumps(res))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def is_texture_bank(model: str) -> bool:
    """Whether ``model`` (a name or card path) is a texture bank: quilted photo patches, no generator network."""
    from geogan.infer import is_texture_bank as card_is_bank
    from geogan.zoo import resolve_model
    return card_is_bank(resolve_model(model))


def capture_quilt_calls() -> list:
    """From now on, record every ``quilt_strip`` call (a texture bank's generator step: one output strip quilted
    from its class map) in the returned list. The class maps are spooled to .npy files in a temporary folder,
    so recording a large render does not hold them all in memory (its peak RSS stays the render's)."""
    import geogan.quilt_model as qm
    calls: list = []
    spool = Path(tempfile.mkdtemp(prefix="geogan-quilt-calls-"))
    original = getattr(qm.quilt_strip, "__wrapped__", qm.quilt_strip)

    def recording(model, classes, *args, **kwargs):
        path = spool / f"{len(calls)}.npy"
        np.save(path, classes)
        calls.append((model, path, args, kwargs))
        return original(model, classes, *args, **kwargs)
    recording.__wrapped__ = original
    qm.quilt_strip = recording
    return calls


def replay_quilt_seconds(calls: list) -> float:
    """Wall seconds to run the recorded ``quilt_strip`` calls again, alone, as many at once as a render runs
    them (:func:`geogan.quilt_model.quilt_rows`): the bare quilting of that render. Reading each strip's
    class map back from its spool file (a few ms) is counted; the spool folder is removed afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    import geogan.quilt_model as qm
    strip = getattr(qm.quilt_strip, "__wrapped__", qm.quilt_strip)
    with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 4))) as pool:
        t = time.perf_counter()
        for _ in pool.map(lambda c: strip(c[0], np.load(c[1]), *c[2], **c[3]), list(calls)):
            pass
        seconds = time.perf_counter() - t
    for folder in {c[1].parent for c in calls}:
        shutil.rmtree(folder, ignore_errors=True)
    return seconds


def rasterize_vs_gdal(osm: Path, bbox, tmp: Path) -> dict:
    from geogan.classes import load_schema
    from geogan.inputs import area_grid, as_paths, read_features
    from geogan.rasterizer import rasterize_classes
    from geogan.settings import AreaSettings
    schema = load_schema()
    paths, grid = area_grid(as_paths(osm), AreaSettings(tuple(bbox), "EPSG:4326", "EPSG:3857", 0.5), 0.5)
    feats, _ = read_features(paths, grid, schema, None, margin_px=2)
    t = time.perf_counter()
    rasterize_classes(feats, grid)
    ours = time.perf_counter() - t
    out = {"rasterize_s": ours, "features": len(feats)}
    exe = shutil.which("gdal_rasterize")
    if exe:
        import pyogrio
        import geopandas as gpd
        gdf = gpd.GeoDataFrame({"cls": feats.class_ids.astype(int)}, geometry=list(feats.geometries), crs=grid.crs)
        src = tmp / "feats.gpkg"
        pyogrio.write_dataframe(gdf, src)
        left, bottom, right, top = grid.bounds
        cmd = [exe, "-q", "-a", "cls", "-te", str(left), str(bottom), str(right), str(top), "-ts", str(grid.width),
               str(grid.height), "-ot", "Byte", "-of", "MEM" if False else "GTiff", str(src), str(tmp / "g.tif")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        out["gdal_rasterize_s"] = time.perf_counter() - t
    return out


PARTS = ("e2e", "memory", "rasterize", "flops", "pix2pix", "dask", "pyramid", "look")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--quick", action="store_true", help="smaller areas (for a smoke run)")
    ap.add_argument("--big-km2", type=float, default=16.0, help="area of the large memory-test render")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads, the same in the benchmark and its render subprocesses (default: all cores)")
    ap.add_argument("--compression", default="deflate", help="the renders' --compress (deflate, zstd, jpeg)")
    ap.add_argument("--repeat", type=int, default=3, help="end-to-end renders to time; the median counts")
    ap.add_argument("--pairs", type=Path, help="LandCover.ai pairs for the 'look' part (skipped without)")
    ap.add_argument("--only", type=lambda s: set(s.split(",")), default=set(PARTS),
                    help=f"comma-separated parts to run (default all): {','.join(PARTS)}")
    args = ap.parse_args()
    if args.only - set(PARTS):
        ap.error(f"unknown parts {sorted(args.only - set(PARTS))}; choose from {','.join(PARTS)}")
    torch.set_num_threads(args.threads)
    from geogan.api import sample_osm_path
    res: dict = {"cpu_count": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
                 "compression": args.compression}
    compress = [f"compression={args.compression!r}"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        osm = sample_osm_path()
        small = 0.1 if args.quick else 1.0
        from geogan.pipeline import CPU_BATCH_TILES
        bank = is_texture_bank(args.model)
        if bank and args.only & {"flops", "pix2pix"}:
            ap.error(f"'{args.model}' is a texture bank (no generator network): the flops and pix2pix parts "
                     "need a generator, e.g. --model fast")
        gen = generator_stats(args.model, batch=CPU_BATCH_TILES) if not bank and args.only & {
            "e2e", "memory", "flops", "pix2pix", "dask"} else None
        if "e2e" in args.only or "dask" in args.only:
            # end-to-end vs generator-only on the same area
            runs = [render_in_subprocess(_town_bbox(small), osm, tmp / "e2e", args.model, compress, renders=2,
                                         generator=True)
                    for _ in range(args.repeat)]
            e2e = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
            warm_seconds = float(np.median([r["warm_seconds"] for r in runs]))
            # the ratios of each process (render and bare generator timed in it, one after the other): medians
            paired = [r["tiles"] * r["gen_seconds_per_tile"] for r in runs]
            res.update(e2e_ratio_paired=float(np.median([g / r["seconds"] for g, r in zip(paired, runs)])),
                       e2e_warm_ratio_paired=float(np.median([g / r["warm_seconds"] for g, r in zip(paired, runs)])))
            h, w = e2e["shape"]
            out_mp = h * w / 1e6
            res.update(e2e_mp_s=out_mp / e2e["seconds"], e2e_seconds=e2e["seconds"], e2e_area_km2=small,
                       e2e_warm_seconds=warm_seconds, e2e_shape=[h, w])
            if gen is not None:
                gen_seconds = e2e["tiles"] * gen["seconds_per_tile"]  # same tiles and batch size, overlap included
                res.update(generator_mp_s=out_mp / gen_seconds, generator_one_call_tile_mp_s=gen["one_call_mp_s"],
                           generator_streams_tile_mp_s=gen["streams_mp_s"], generator_streams=gen["streams"],
                           e2e_ratio=gen_seconds / e2e["seconds"], e2e_warm_ratio=gen_seconds / warm_seconds)
        if "memory" in args.only:
            # memory: 1 km2 vs 16 km2
            big = 1.0 if args.quick else args.big_km2
            big_osm = _synthetic_town(big, tmp / "big.osm")
            m1 = render_in_subprocess(_town_bbox(small), osm, tmp / "m1", args.model, compress)
            m16 = render_in_subprocess(_town_bbox(big), big_osm, tmp / "m16", args.model, compress, generator=True)
            res.update(rss_1km2_mb=m1["maxrss_mb"], rss_16km2_mb=m16["maxrss_mb"],
                       rss_ratio=m16["maxrss_mb"] / m1["maxrss_mb"], big_area_km2=big, big_seconds=m16["seconds"],
                       big_cpu_seconds=m16["cpu_seconds"], load_1min_1km2=m1["load_1min"],
                       load_1min_16km2=m16["load_1min"])
            # the same ratio on the large render (a town of that size: fixed costs spread)
            big_mp = m16["shape"][0] * m16["shape"][1] / 1e6
            res.update(big_e2e_mp_s=big_mp / m16["seconds"],
                       big_e2e_ratio_paired=m16["tiles"] * m16["gen_seconds_per_tile"] / m16["seconds"])
            if gen is not None:
                res["big_e2e_ratio"] = m16["tiles"] * gen["seconds_per_tile"] / m16["seconds"]
        if "rasterize" in args.only:
            res.update(rasterize_vs_gdal(osm, _town_bbox(small), tmp))
        if "flops" in args.only:
            peak = max(matmul_flops() for _ in range(3))  # the machine's best, not one noisy sample
            res.update(generator_flop_s=gen["flop_s"], matmul_peak_flop_s=peak,
                       generator_flops_fraction=gen["flop_s"] / peak, generator_gflops_per_tile=gen["flops_per_tile"] / 1e9)
        if "pix2pix" in args.only:
            res["pix2pix_ref_mp_s"] = pix2pix_mp_s(batch=CPU_BATCH_TILES)
            res["default_vs_pix2pix_speedup"] = gen["one_call_mp_s"] / res["pix2pix_ref_mp_s"]  # both one call
            # the same end-to-end render with the reference generator in place of the default model: how much
            # of the render the pipeline around a generator of pix2pix's cost takes (bare generator re-timed in
            # the render's process)
            p2p = render_in_subprocess(_town_bbox(small), osm, tmp / "p2p_out", str(pix2pix_model(tmp / "p2p")),
                                       compress, generator=True, gen_reps=6)
            res.update(pix2pix_e2e_seconds=p2p["seconds"],
                       pix2pix_e2e_ratio_paired=p2p["tiles"] * p2p["gen_seconds_per_tile"] / p2p["seconds"])
        if "dask" in args.only:
            d1 = render_in_subprocess(_town_bbox(small), osm, tmp / "d1", args.model, extra=["workers=2", *compress])
            res.update(dask_2w_s=d1["seconds"], single_s=e2e["seconds"],
                       dask_speedup=e2e["seconds"] / d1["seconds"])
        if "pyramid" in args.only:
            from pyramid_bench import cost_rows
            res.update(cost_rows(tmp, args.model))
        if "look" in args.only and args.pairs is not None:
            from pyramid_bench import look_rows
            res.update(look_rows(args.pairs, tmp, args.model))
    for k, v in res.items():
        print(f"{k:>24}: {v:.4g}" if isinstance(v, float) else f"{k:>24}: {v}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
