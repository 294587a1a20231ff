"""geogan GPU benchmark: the generator's throughput on a CUDA GPU under each inference option.

    python benchmarks/gpu_bench.py --json gpu.json [--models default,style] [--quick]

Needs torch with CUDA only (``geogan.infer`` and ``geogan.models`` import no GDAL stack). Measures, in one run:
- the card's ceilings: dense matrix products (8192^3, random operands) in fp32, tf32, bf16 and fp16;
- accuracy of each precision against the same generator in float64 on the GPU (``rel_err``:
  ||out - ref|| / ||ref|| over a batch of random class maps and noise; ``max_err_levels``: the largest
  difference in 8-bit grey levels);
- throughput (output MP/s, 256 px tiles) for precision x memory layout at one batch size, a batch-size
  sweep, ``torch.compile`` (default mode and ``reduce-overhead``, i.e. CUDA graphs) with its compile time,
  and ``geogan.infer.run_batch`` itself at the default precision (uint8 class ids in, float32 numpy out:
  what a render calls);
- FLOP/s of each variant (torch.utils.flop_counter) as a fraction of the matching matmul ceiling;
- the reference pix2pix generator (ngf 64) under the fastest eager option, for the speed-up figure.

Timings: CUDA events around each call, after warm-up, median of the repeats, inputs rotated among three
sets so no call reads what the previous one left in L2. The table is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEVICE = "cuda"  # --smoke-cpu runs the same code on the CPU (a check of the script, not a benchmark)
TILE_PX = 256
TILE_MP = TILE_PX * TILE_PX / 1e6
PRECISIONS = ("fp32", "tf32", "bf16-autocast", "fp16-autocast", "bf16", "fp16")
WEIGHT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # weights and inputs cast, no autocast


@contextlib.contextmanager
def precision_mode(name: str):
    """Matmul/conv settings and autocast for one of ``PRECISIONS`` ('bf16', 'fp16': weights and inputs cast)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = name != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    amp = {"bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}.get(name)
    try:
        with torch.autocast(DEVICE, dtype=amp or torch.float32, enabled=amp is not None):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def ceiling_flops(n: int = 8192) -> dict:
    """Dense n^3 matrix products per precision: the card's FLOP/s ceilings as found."""
    out = {}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device=DEVICE, dtype=dtype)
        b = torch.randn(n, n, device=DEVICE, dtype=dtype)
        t = time_cuda(lambda: a @ b, reps=10, warmup=3)
        out[name] = 2 * n ** 3 / t
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def time_cuda(fn, reps: int = 20, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` between CUDA events, after ``warmup`` calls (the CPU smoke run: one call,
    timed; its numbers mean nothing)."""
    if DEVICE == "cpu":
        return _host_time(fn)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def _host_time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def random_inputs(n_classes: int, batch: int, seed: int, dtype=torch.float32, channels_last: bool = True):
    """Random one-hot class maps (blocky, like rasterized features) and unit noise on the GPU."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, n_classes, (batch, TILE_PX // 8, TILE_PX // 8), generator=g)
    ids = ids.repeat_interleave(8, 1).repeat_interleave(8, 2)
    x = torch.nn.functional.one_hot(ids, n_classes).permute(0, 3, 1, 2).to(DEVICE, dtype)
    z = torch.randn(batch, 1, TILE_PX, TILE_PX, generator=g).to(DEVICE, dtype)
    if channels_last:
        x, z = x.contiguous(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    else:
        x, z = x.contiguous(), z.contiguous()
    return x, z


def call(module, x, z, style):
    return module(x, noise=z) if style is None else module(x, noise=z, style=style.to(x))


def flops_per_tile(module, n_classes: int, style) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x, z = random_inputs(n_classes, 1, 0)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        call(module, x, z, style)
    return float(fc.get_total_flops())


def accuracy(module, n_classes: int, style, batch: int) -> dict:
    """Each precision's output against the generator in float64 on the same random inputs."""
    ref_module = copy.deepcopy(module).double()
    x, z = random_inputs(n_classes, batch, 123)
    with torch.inference_mode():
        ref = call(ref_module, x.double(), z.double(), None if style is None else style.double()).double()
        out = {}
        for name in PRECISIONS:
            m = module_for(module, name)
            dt = WEIGHT_DTYPES.get(name, torch.float32)
            xi, zi = x.to(dt), z.to(dt)
            with precision_mode(name):
                y = call(m, xi, zi, style).double()
            out[name] = {"rel_err": float((y - ref).norm() / ref.norm()),
                         "max_err_levels": float((y - ref).abs().max() * 127.5),
                         "finite": bool(torch.isfinite(y).all())}
    del ref_module
    return out


_CAST_COPIES: dict = {}


def module_for(module, precision: str):
    """The module as run under ``precision``: a copy cast to bf16/fp16 for 'bf16'/'fp16', else itself."""
    if precision not in WEIGHT_DTYPES:
        return module
    key = (id(module), precision)
    if key not in _CAST_COPIES:
        _CAST_COPIES[key] = copy.deepcopy(module).to(WEIGHT_DTYPES[precision])
    return _CAST_COPIES[key]


def throughput(module, n_classes: int, style, precision: str, batch: int, channels_last: bool = True,
               reps: int = 20, flops_tile: float | None = None, ceilings: dict | None = None) -> dict:
    m = module_for(module, precision)
    if not channels_last:
        m = copy.deepcopy(m).to(memory_format=torch.contiguous_format)
    dtype = WEIGHT_DTYPES.get(precision, torch.float32)
    sets = [random_inputs(n_classes, batch, s, dtype, channels_last) for s in range(3)]
    k = [0]

    def step():
        x, z = sets[k[0] % 3]
        k[0] += 1
        call(m, x, z, style)

    with torch.inference_mode(), precision_mode(precision):
        t = time_cuda(step, reps=reps)
    res = {"precision": precision, "batch": batch, "channels_last": channels_last,
           "ms_per_batch": t * 1e3, "mp_s": batch * TILE_MP / t}
    if flops_tile and ceilings:
        ceiling = ceilings["fp32" if precision == "fp32" else "tf32" if precision == "tf32" else
                           "fp16" if precision.startswith("fp16") else "bf16"]
        res["flops_fraction"] = flops_tile * batch / t / ceiling
    return res


def compiled_throughput(module, n_classes: int, style, precision: str, batch: int, mode: str | None) -> dict:
    """``torch.compile`` (``mode``: None or 'reduce-overhead' = CUDA graphs); compile time = first calls."""
    import torch._dynamo
    torch._dynamo.reset()
    m = torch.compile(copy.deepcopy(module_for(module, precision)), mode=mode, dynamic=False)
    dtype = WEIGHT_DTYPES.get(precision, torch.float32)
    sets = [random_inputs(n_classes, batch, s, dtype) for s in range(3)]
    k = [0]

    def step():
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        x, z = sets[k[0] % 3]
        k[0] += 1
        call(m, x, z, style)

    with torch.inference_mode(), precision_mode(precision):
        t0 = time.perf_counter()
        for _ in range(3):  # cudagraph trees record on the second/third call
            step()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        t = time_cuda(step, reps=30)
        x, z = random_inputs(n_classes, batch, 99, dtype)
        eager = call(module_for(module, precision), x, z, style).float()
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        same = call(m, x, z, style).float()
        diff = float((same - eager).norm() / eager.norm())
    return {"precision": precision, "batch": batch, "compile": mode or "default", "compile_s": compile_s,
            "ms_per_batch": t * 1e3, "mp_s": batch * TILE_MP / t, "rel_diff_vs_eager": diff}


def run_batch_throughput(loaded, batch: int, reps: int = 20) -> dict:
    """geogan.infer.run_batch as a render calls it: uint8 schema ids and float32 noise from host memory,
    float32 outputs back in host memory (host clock; the call ends with the copy back)."""
    from geogan.infer import run_batch
    rng = np.random.default_rng(0)
    ids = [np.repeat(np.repeat(rng.integers(0, 8, (batch, TILE_PX // 8, TILE_PX // 8), dtype=np.uint8), 8, 1), 8, 2)
           for _ in range(3)]
    noise = [rng.standard_normal((batch, 1, TILE_PX, TILE_PX), dtype=np.float32) for _ in range(3)]
    for i in range(3 if DEVICE == "cuda" else 1):
        run_batch(loaded, ids[i], noise[i], TILE_PX)
    times = []
    for i in range(reps):
        t = time.perf_counter()
        run_batch(loaded, ids[i % 3], noise[i % 3], TILE_PX)
        times.append(time.perf_counter() - t)
    t = float(np.median(times))
    return {"batch": batch, "ms_per_batch": t * 1e3, "mp_s": batch * TILE_MP / t}


def pix2pix_module():
    from geogan.infer import prepare_for_inference
    from geogan.models.registry import build_generator
    return prepare_for_inference(build_generator("pix2pix", {"in_nc": 5}), torch.device(DEVICE))


def bench_model(name: str, ceilings: dict, quick: bool) -> dict:
    from geogan.classes import load_schema
    from geogan.infer import load_model
    loaded = load_model(name, load_schema(), DEVICE, precision="fp32")  # each variant casts it its own way
    module, n, style = loaded.module, loaded.n_classes, loaded.style
    style = None if style is None else style.to(DEVICE)
    smoke = DEVICE == "cpu"
    reps = 1 if smoke else 10 if quick else 20
    res: dict = {"model": name, "architecture": type(module).__name__, "n_classes": n}
    res["flops_per_tile"] = f = flops_per_tile(module, n, style)
    res["accuracy_vs_fp64"] = accuracy(module, n, style, batch=1 if smoke else 8)
    main_batch = 1 if smoke else 64
    res["precision_layout"] = [throughput(module, n, style, p, main_batch, cl, reps, f, ceilings)
                               for p in PRECISIONS for cl in (True, False)]
    best = max(res["precision_layout"], key=lambda r: r["mp_s"])
    res["best_eager"] = {"precision": best["precision"], "channels_last": best["channels_last"]}
    batches = (1,) if smoke else (1, 8, 32, 64, 128) if quick else (1, 8, 16, 32, 64, 128, 256)
    res["batch_sweep"] = [throughput(module, n, style, p, b, True, reps, f, ceilings)
                          for p in ("fp16-autocast", "bf16", "fp16") for b in batches]
    auto = load_model(name, load_schema(), DEVICE)  # what a render uses: fp16 weights on CUDA
    res["run_batch_precision"] = auto.precision
    res["run_batch"] = [run_batch_throughput(auto, b, reps) for b in ((1,) if smoke else (8, 32, 64, 128))]
    if not quick:
        res["compiled"] = []
        for precision, batch, mode in (("fp16-autocast", 64, None), ("fp16-autocast", 64, "reduce-overhead"),
                                       ("fp16-autocast", 8, "reduce-overhead"), ("bf16", 64, "reduce-overhead"),
                                       ("fp16", 64, "reduce-overhead")):
            try:
                res["compiled"].append(compiled_throughput(module, n, style, precision, batch, mode))
            except Exception as e:  # report, keep the rest of the run
                res["compiled"].append({"precision": precision, "batch": batch, "compile": mode or "default",
                                        "error": f"{type(e).__name__}: {e}"[:300]})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--models", default="fast", help="comma-separated model names or card paths")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and batch sizes, no compile")
    ap.add_argument("--smoke-cpu", action="store_true", help="run the script on the CPU, tiny (a self-check)")
    args = ap.parse_args()
    global DEVICE
    if args.smoke_cpu:
        DEVICE, args.quick = "cpu", True
        res: dict = {"date": time.strftime("%Y-%m-%d"), "device": "cpu (smoke run)", "torch": torch.__version__,
                     "cuda": None}
    elif not torch.cuda.is_available():
        sys.exit("gpu_bench: no CUDA GPU here; run benchmarks/bench.py for the CPU figures")
    else:
        props = torch.cuda.get_device_properties(0)
        res = {"date": time.strftime("%Y-%m-%d"), "device": props.name, "torch": torch.__version__,
               "cuda": torch.version.cuda, "sm_count": props.multi_processor_count,
               "memory_gib": props.total_memory / 2**30}
    res["ceiling_flop_s"] = ceilings = ceiling_flops(512 if args.smoke_cpu else 8192)
    res["models"] = [bench_model(m, ceilings, args.quick) for m in args.models.split(",")]
    p2p = pix2pix_module()
    best = res["models"][0]["best_eager"]
    res["pix2pix_ref"] = throughput(p2p, 5, None, best["precision"], 1 if args.smoke_cpu else 64, best["channels_last"],
                                    flops_tile=flops_per_tile(p2p, 5, None), ceilings=ceilings)
    default_best = max(r["mp_s"] for r in res["models"][0]["precision_layout"])
    res["default_vs_pix2pix_speedup"] = default_best / res["pix2pix_ref"]["mp_s"]
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print_table(res)


def print_table(res: dict) -> None:
    print(f"\n{res['device']}  torch {res['torch']}  CUDA {res['cuda']}")
    print("ceilings TFLOP/s: " + ", ".join(f"{k} {v / 1e12:.0f}" for k, v in res["ceiling_flop_s"].items()))
    for m in res["models"]:
        print(f"\n== {m['model']} ({m['architecture']}), {m['flops_per_tile'] / 1e9:.2f} GFLOP per 256 px tile")
        print("accuracy vs fp64: " + ", ".join(f"{k} {v['rel_err']:.1e} (max {v['max_err_levels']:.2f} lv)"
                                               for k, v in m["accuracy_vs_fp64"].items()))
        print(f"{'precision':14s} {'layout':6s} {'batch':>5s} {'ms':>8s} {'MP/s':>8s} {'of peak':>7s}")
        for r in m["precision_layout"] + m["batch_sweep"]:
            print(f"{r['precision']:14s} {'NHWC' if r['channels_last'] else 'NCHW':6s} {r['batch']:5d} "
                  f"{r['ms_per_batch']:8.2f} {r['mp_s']:8.0f} {r.get('flops_fraction', 0):7.2f}")
        for r in m["run_batch"]:
            print(f"run_batch      NHWC   {r['batch']:5d} {r['ms_per_batch']:8.2f} {r['mp_s']:8.0f}")
        for r in m.get("compiled", []):
            if "error" in r:
                print(f"compile {r['compile']} {r['precision']} b{r['batch']}: {r['error']}")
            else:
                print(f"compile {r['compile']:15s} {r['precision']:14s} b{r['batch']:<4d} {r['ms_per_batch']:8.2f} ms "
                      f"{r['mp_s']:8.0f} MP/s  (compile {r['compile_s']:.0f} s, vs eager {r['rel_diff_vs_eager']:.1e})")
    p = res["pix2pix_ref"]
    print(f"\npix2pix ref ngf64 ({p['precision']}, b64): {p['mp_s']:.0f} MP/s; default is "
          f"{res['default_vs_pix2pix_speedup']:.1f}x faster")


if __name__ == "__main__":
    main()
