"""geogan end-to-end render on a CUDA GPU: throughput, its ratio to the bare generator, and agreement with
the CPU render.

    python benchmarks/gpu_render.py --json gpu_render.json [--areas 1,16] [--batch-tiles 8,32,64]

Renders the bundled sample town (1 km^2 and a 16 km^2 area around it, as benchmarks/bench.py) with
``device="cuda"`` in this process: the first render is cold (CUDA context, cuDNN plans), later ones warm.
For each batch size (``geogan.pipeline.CUDA_BATCH_TILES``) and generator-call count in flight
(``geogan.infer.CUDA_STREAMS``) it times warm renders, and times the bare generator on the same tiles at
the same batch size (fp16 weights, as ``run_batch`` runs it; device time only) for the e2e ratio. It
then renders 1 km^2 on the CPU and compares: classes must be equal; aerial and heights differ by the
GPU's fp16 weights (mean and max in grey levels / metres are reported).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import _synthetic_town, _town_bbox  # noqa: E402


def render_seconds(osm, bbox, out: Path, device: str, **kw) -> tuple[float, object]:
    import geogan
    t = time.perf_counter()
    kw.setdefault("model", "fast")  # the neural generator (the default texture bank has no GPU path)
    res = geogan.render(osm=str(osm), bbox=bbox, out_dir=out, device=device, overwrite=True, force=True, seed=0,
                        **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, res


def bare_generator_seconds(tiles: int, batch: int, reps: int = 5) -> float:
    """Device seconds for ``tiles`` 256 px tiles through the default generator, ``batch`` per call, with
    inputs already on the GPU (at the default precision: fp16 weights on CUDA, as a render runs it)."""
    from geogan.classes import load_schema
    from geogan.infer import load_model
    m = load_model("fast", load_schema(), "auto")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, m.n_classes, (batch, 32, 32), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    x = torch.nn.functional.one_hot(ids, m.n_classes).permute(0, 3, 1, 2).to(m.device, m.dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    z = torch.randn(batch, 1, 256, 256, generator=g).to(m.device, m.dtype)
    calls, last = divmod(tiles, batch)
    def run():
        for _ in range(calls):
            m.module(x, noise=z)
        if last:
            m.module(x[:last], noise=z[:last])

    import gpu_bench
    gpu_bench.DEVICE = m.device.type  # --smoke-cpu: the same code, host clock
    with torch.inference_mode():
        return gpu_bench.time_cuda(run, reps=reps, warmup=1)


def compare(gpu_dir: Path, cpu_dir: Path) -> dict:
    import rasterio
    out = {}
    with rasterio.open(gpu_dir / "classes.tif") as a, rasterio.open(cpu_dir / "classes.tif") as b:
        out["classes_equal"] = bool((a.read() == b.read()).all())
    with rasterio.open(gpu_dir / "aerial.tif") as a, rasterio.open(cpu_dir / "aerial.tif") as b:
        d = np.abs(a.read().astype(np.int16) - b.read().astype(np.int16))
        out.update(aerial_mean_diff_levels=float(d.mean()), aerial_max_diff_levels=int(d.max()),
                   aerial_p99_diff_levels=float(np.percentile(d, 99)), same_grid=a.transform == b.transform)
    with rasterio.open(gpu_dir / "height.tif") as a, rasterio.open(cpu_dir / "height.tif") as b:
        d = np.abs(a.read(1).astype(np.float64) - b.read(1).astype(np.float64))
        out.update(height_mean_diff_m=float(d.mean()), height_max_diff_m=float(d.max()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--areas", default="1,16", help="km^2, comma-separated")
    ap.add_argument("--batch-tiles", default="8,64", help="tiles per generator call, comma-separated")
    ap.add_argument("--streams", default="1,2", help="generator calls in flight, comma-separated")
    ap.add_argument("--compression", default="deflate")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--big-configs", default="8:1,64:1,64:2",
                    help="batch:streams pairs for areas over 1 km^2 (each render is long), comma-separated")
    ap.add_argument("--no-extras", action="store_true", help="skip the --compile renders and the CPU comparison")
    ap.add_argument("--smoke-cpu", action="store_true", help="run on the CPU, tiny (a self-check of the script)")
    args = ap.parse_args()
    dev = "cuda"
    if args.smoke_cpu:
        dev, args.areas, args.batch_tiles, args.streams, args.repeat, args.big_configs = "cpu", "0.05,0.1", "4", "1", 1, "4:1"
    elif not torch.cuda.is_available():
        sys.exit("gpu_render: no CUDA GPU here")
    import geogan.infer as infer_mod
    import geogan.pipeline as render_mod
    from geogan.api import sample_osm_path
    shipped = render_mod.CUDA_BATCH_TILES, infer_mod.CUDA_STREAMS
    res: dict = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
                 "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "runs": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        osm = sample_osm_path()
        for area in (float(a) for a in args.areas.split(",")):
            src = osm if area <= 1 else _synthetic_town(area, tmp / f"town{area:g}.osm")
            bbox = _town_bbox(area)
            if not res["runs"]:
                cold, r = render_seconds(src, bbox, tmp / "gpu", dev, compression=args.compression)
                res["cold_seconds"], res["cold_area_km2"] = cold, area
            configs = [(int(b), int(s)) for b in args.batch_tiles.split(",") for s in args.streams.split(",")] \
                if area <= 1 else [tuple(int(v) for v in c.split(":")) for c in args.big_configs.split(",")]
            for batch, streams in configs:
                render_mod.CUDA_BATCH_TILES, infer_mod.CUDA_STREAMS = batch, streams
                secs = []
                for _ in range(args.repeat if area <= 1 else 2):
                    s, r = render_seconds(src, bbox, tmp / "gpu", dev, compression=args.compression)
                    secs.append(s)
                h, w = r.grid.shape_yx
                seconds, gen_s = float(np.median(secs)), bare_generator_seconds(r.tiles, batch)
                run = {"area_km2": area, "batch_tiles": batch, "streams": streams, "tiles": r.tiles,
                       "shape": [h, w], "seconds": seconds, "all_seconds": secs, "e2e_mp_s": h * w / 1e6 / seconds,
                       "generator_seconds": gen_s, "generator_mp_s": h * w / 1e6 / gen_s,
                       "e2e_ratio": gen_s / seconds}
                res["runs"].append(run)
                print(json.dumps(run), flush=True)
        # the --compile renders and the CPU comparison run with the shipped settings
        render_mod.CUDA_BATCH_TILES, infer_mod.CUDA_STREAMS = shipped
        for compile_ in (() if args.no_extras else (False,) if args.smoke_cpu else (False, True)):
            try:
                km2 = 0.05 if args.smoke_cpu else 1
                s1, _ = render_seconds(osm, _town_bbox(km2), tmp / "c", dev, compile=compile_)
                s2, _ = render_seconds(osm, _town_bbox(km2), tmp / "c", dev, compile=compile_)
                res[f"compile_{compile_}"] = {"first_s": s1, "second_s": s2}
            except Exception as e:
                res[f"compile_{compile_}"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        if not args.no_extras:
            check_km2 = 0.1 if args.smoke_cpu else 1
            _, r = render_seconds(osm, _town_bbox(check_km2), tmp / "gpu1", dev)
            t_cpu, _ = render_seconds(osm, _town_bbox(check_km2), tmp / "cpu1", "cpu")
            res["cpu_1km2_seconds"] = t_cpu
            res["gpu_vs_cpu"] = compare(tmp / "gpu1", tmp / "cpu1")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print(f"\n{res['device']}, torch {res['torch']}, {res['cpu_threads']} CPU threads; cold render "
          f"{res['cold_seconds']:.2f} s ({res['cold_area_km2']:g} km2)")
    print(f"{'km2':>4} {'batch':>5} {'str':>3} {'tiles':>5} {'e2e s':>7} {'e2e MP/s':>9} {'gen s':>7} {'gen MP/s':>9} "
          f"{'ratio':>6}")
    for r in res["runs"]:
        print(f"{r['area_km2']:4g} {r['batch_tiles']:5d} {r['streams']:3d} {r['tiles']:5d} {r['seconds']:7.2f} "
              f"{r['e2e_mp_s']:9.1f} {r['generator_seconds']:7.3f} {r['generator_mp_s']:9.0f} {r['e2e_ratio']:6.3f}")
    if not args.no_extras:
        print("compile:", res.get("compile_False"), res.get("compile_True"))
        print(f"CPU render 1 km2 on this machine: {res['cpu_1km2_seconds']:.2f} s; GPU vs CPU: {res['gpu_vs_cpu']}")


if __name__ == "__main__":
    main()
