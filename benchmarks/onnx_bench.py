"""ONNX runtime vs PyTorch for the shipped generator: agreement, per-tile speed on this CPU, install sizes.

    .venv/bin/python benchmarks/onnx_bench.py --json benchmarks/results/onnx_DATE.json [--model default]
        [--tiles 32] [--repeats 7] [--sections agreement,speed,render,sizes,wheels] [--update]

1. Exports the model (geogan.onnx_export.export_onnx) into a temporary folder.
2. Agreement: 32 real-looking 256 px class maps (the sample town, sample_data/sample_town.osm, rasterized at
   the model's GSD by geogan.api.rasterize_array; tiles spread over it) with the render's noise
   (geogan.noise.noise_window), run by both runtimes through geogan.infer.run_batch (4 tiles per call, as
   the CPU render does): max and mean |difference| in grey levels before rounding, and of the 8-bit values.
3. Speed: ms per 256 px tile (8 tiles per timed run, 2 calls of 4), each configuration timed ``--repeats``
   times, interleaved; medians reported with the 1-minute load average before and after (the machine is
   shared). Configurations: 1 thread; 2 threads as one call; 2 threads as two 1-thread calls at once
   (geogan.infer.run_batches, what the CPU render does).
4. Render: a whole render (OSM -> COGs) of 400 x 400 m of the sample town with each runtime's model given
   preloaded to geogan.api.render (the run_batch seam), interleaved; median seconds.
5. Install sizes: fresh venvs with pip (this machine's pip configuration: torch==2.13.0 is the CPU build from
   the local wheel) and the size of each venv's site-packages (``du -sb``, MB = 10^6 B); and the download
   size of the runtimes' wheels (``pip download --no-deps``) for this Python and platform.

``--sections`` picks the parts to run; ``--update`` merges them into an existing ``--json`` file (speed runs are
appended to ``speed_runs``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geogan.api import rasterize_array, sample_osm_path  # noqa: E402
from geogan.classes import load_schema  # noqa: E402
from geogan.infer import load_model, run_batch, run_batches  # noqa: E402
from geogan.noise import noise_window  # noqa: E402
from geogan.onnx_export import export_onnx  # noqa: E402
from geogan.onnx_infer import grey_levels, new_session, onnx_file  # noqa: E402

TILE_PX = 256
BATCH = 4
GEOGAN_DEPS = ["numpy>=1.24", "rasterio>=1.3", "pyogrio>=0.7", "pyproj>=3.5", "shapely>=2.0", "affine>=2.4",
               "safetensors>=0.4", "typer>=0.9", "rich>=13", "pillow>=10", "pygltflib>=1.16"]  # pyproject, less torch
VENVS = {
    "empty venv (pip only)": [],
    "onnxruntime + numpy": ["onnxruntime", "numpy"],
    "torch==2.13.0 (CPU) + numpy": ["torch==2.13.0", "numpy"],
    "geogan's other dependencies + onnxruntime": GEOGAN_DEPS + ["onnxruntime"],
    "geogan's other dependencies + torch==2.13.0 (CPU)": GEOGAN_DEPS + ["torch==2.13.0"],
}


def town_tiles(gsd_m: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-map tiles (uint8 schema ids) spread over the rasterized sample town, and their noise."""
    classes, _ = rasterize_array(str(sample_osm_path()), gsd_m=gsd_m)
    h, w = classes.shape
    rows = np.linspace(0, h - TILE_PX, int(np.ceil(np.sqrt(n * h / w)))).astype(int)
    cols = np.linspace(0, w - TILE_PX, int(np.ceil(n / len(rows)))).astype(int)
    corners = [(r, c) for r in rows for c in cols][:n]
    maps = np.stack([classes[r:r + TILE_PX, c:c + TILE_PX] for r, c in corners])
    noise = np.stack([noise_window(seed, r, c, TILE_PX, TILE_PX)[None] for r, c in corners]).astype(np.float32)
    return maps, noise


def agreement(torch_model, onnx_model, maps: np.ndarray, noise: np.ndarray) -> dict:
    """|torch - onnx| over all tiles, in grey levels: raw (before rounding) and of the written 8-bit values."""
    raw, u8 = [], []
    for i in range(0, len(maps), BATCH):
        a = run_batch(torch_model, maps[i:i + BATCH], noise[i:i + BATCH], TILE_PX)
        b = run_batch(onnx_model, maps[i:i + BATCH], noise[i:i + BATCH], TILE_PX)
        raw.append(np.abs(a - b).ravel() * 127.5)
        u8.append(np.abs(grey_levels(a).astype(np.int16) - grey_levels(b)).ravel())
    raw_all, u8_all = np.concatenate(raw), np.concatenate(u8)
    return {"tiles": int(len(maps)), "tile_px": TILE_PX, "max_abs_diff_grey": float(raw_all.max()),
            "mean_abs_diff_grey": float(raw_all.mean()), "max_abs_diff_uint8": int(u8_all.max()),
            "mean_abs_diff_uint8": float(u8_all.mean()), "fraction_uint8_differing": float((u8_all > 0).mean()),
            "classes_in_tiles": sorted(int(c) for c in np.unique(maps))}


def _timed(fn, tiles: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000 / tiles


def speed_configs(torch_model, onnx_path: Path, onnx_model, maps, noise) -> dict:
    """Name -> a function running the 8 timed tiles in that configuration."""
    import dataclasses

    onnx_2t = dataclasses.replace(onnx_model, session=new_session(onnx_path, threads=2))
    items = [(i, maps[i:i + BATCH], noise[i:i + BATCH]) for i in range(0, len(maps), BATCH)]

    def one_call(model, threads):
        def run():
            torch.set_num_threads(threads)
            for _, m, z in items:
                run_batch(model, m, z, TILE_PX)
        return run

    def two_streams(model):
        def run():
            torch.set_num_threads(2)
            for _ in run_batches(model, iter(items), TILE_PX, streams=2, threads_per_stream=1):
                pass
        return run

    return {"torch 1 thread": one_call(torch_model, 1), "onnxruntime 1 thread": one_call(onnx_model, 1),
            "torch 2 threads, one call": one_call(torch_model, 2),
            "onnxruntime 2 threads, one call": one_call(onnx_2t, 1),
            "torch 2 threads as two 1-thread calls (the render's way)": two_streams(torch_model),
            "onnxruntime 2 threads as two 1-thread calls": two_streams(onnx_model)}


PAIRS = {"1 thread": ("torch 1 thread", "onnxruntime 1 thread"),
         "2 threads, one call": ("torch 2 threads, one call", "onnxruntime 2 threads, one call"),
         "2 threads as two calls": ("torch 2 threads as two 1-thread calls (the render's way)",
                                    "onnxruntime 2 threads as two 1-thread calls")}


def paired_ratios(configs: dict) -> dict:
    """Median over repeats of torch's time / onnxruntime's in the same repeat (neighbouring runs see about the
    same load, so the ratio drifts less than either time)."""
    out = {}
    for name, (t, o) in PAIRS.items():
        ratios = [a / b for a, b in zip(configs[t]["runs_ms_per_tile"], configs[o]["runs_ms_per_tile"])]
        out[name] = round(statistics.median(ratios), 2)
    return out


def speed(configs: dict, tiles: int, repeats: int) -> dict:
    """Median ms per tile of each configuration over ``repeats`` interleaved runs (after one warm-up)."""
    runs: dict[str, list[float]] = {name: [] for name in configs}
    load_before = os.getloadavg()[0]
    for name, fn in configs.items():
        fn()  # warm-up: first-call allocations, oneDNN / onnxruntime kernel choice
    for _ in range(repeats):
        for name, fn in configs.items():
            runs[name].append(_timed(fn, tiles))
    torch.set_num_threads(2)
    out = {name: {"median_ms_per_tile": round(statistics.median(v), 2), "min_ms_per_tile": round(min(v), 2),
                  "runs_ms_per_tile": [round(x, 2) for x in v]} for name, v in runs.items()}
    return {"tiles_per_run": tiles, "batch_tiles": BATCH, "repeats": repeats, "configs": out,
            "torch_over_onnx_paired": paired_ratios(out),
            "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def render_times(card_path: Path, models: dict, repeats: int, side_m: float = 400.0) -> dict:
    """Median seconds of a whole render (OSM -> three COGs) of a ``side_m`` square of the sample town with each
    preloaded model (the run_batch seam; the render's own CPU threading), interleaved ``repeats`` times."""
    from geogan import api

    bbox = _centre_bbox(side_m)
    runs: dict[str, list[float]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory(prefix="geogan-onnx-render-") as tmp:
        for i in range(repeats + 1):  # the first round warms up
            for name, model in models.items():
                start = time.perf_counter()
                api.render(osm=str(sample_osm_path()), bbox=bbox, out_dir=Path(tmp) / name, model=str(card_path),
                           overwrite=True, _preloaded=model)
                if i:
                    runs[name].append(time.perf_counter() - start)
    out = {name: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v]}
           for name, v in runs.items()}
    ratios = [a / b for a, b in zip(*runs.values())]
    return {"area_m": [side_m, side_m], "bbox_lonlat": bbox, "repeats": repeats, "runtimes": out,
            "torch_over_onnx_paired": round(statistics.median(ratios), 2), "torch_threads": torch.get_num_threads(),
            "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def _centre_bbox(side_m: float) -> tuple[float, float, float, float]:
    """A lon/lat square of ``side_m`` metres at the centre of the sample town's bounds."""
    import re

    text = sample_osm_path().read_text(encoding="utf-8")[:2000]
    b = {k: float(v) for k, v in re.findall(r'(min\w+|max\w+)="([-0-9.]+)"', text)}
    lon, lat = (b["minlon"] + b["maxlon"]) / 2, (b["minlat"] + b["maxlat"]) / 2
    dlat = side_m / 2 / 111_320.0
    dlon = dlat / np.cos(np.radians(lat))
    return (round(lon - dlon, 6), round(lat - dlat, 6), round(lon + dlon, 6), round(lat + dlat, 6))


def venv_size(packages: list[str], where: Path) -> dict:
    """Install ``packages`` into a fresh venv at ``where``; its site-packages size and what went in."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    py = where / "bin" / "python"
    if packages:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True, capture_output=True)
    site = next((where / "lib").glob("python*/site-packages"))
    du = subprocess.run(["du", "-sb", str(site)], capture_output=True, text=True, check=True).stdout.split()[0]
    human = subprocess.run(["du", "-sh", str(site)], capture_output=True, text=True, check=True).stdout.split()[0]
    listed = json.loads(subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], capture_output=True,
                                       text=True, check=True).stdout)
    return {"packages": packages, "site_packages_mb": round(int(du) / 1e6, 1), "du_sh": human,
            "installed": {p["name"]: p["version"] for p in listed}}


WHEELS = ["onnxruntime==1.32.0", "numpy==2.4.6", "torch==2.13.0"]


def wheel_sizes() -> dict:
    """MB of each wheel in :data:`WHEELS` as pip downloads it (no dependencies) for this Python/platform."""
    with tempfile.TemporaryDirectory(prefix="geogan-onnx-wheels-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *WHEELS], check=True,
                       capture_output=True)
        return {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(Path(tmp).glob("*.whl"))}


def install_sizes() -> dict:
    with tempfile.TemporaryDirectory(prefix="geogan-onnx-venvs-") as tmp:
        sizes = {}
        for i, (name, packages) in enumerate(VENVS.items()):
            start = time.perf_counter()
            sizes[name] = venv_size(packages, Path(tmp) / f"v{i}")
            sizes[name]["install_s"] = round(time.perf_counter() - start, 1)
            print(f"{name}: {sizes[name]['site_packages_mb']} MB", flush=True)
        return sizes


def measure_runtimes(model: str, tiles: int, repeats: int, sections: set[str]) -> dict:
    """Export ``model``, then the agreement, speed and render sections (those in ``sections``)."""
    schema = load_schema()
    result = {}
    with tempfile.TemporaryDirectory(prefix="geogan-onnx-") as tmp:
        report = export_onnx(model, Path(tmp) / f"{model}.onnx")
        print(f"exported in {report.seconds:.1f} s: {report.onnx_path.stat().st_size / 1e6:.1f} MB", flush=True)
        torch_model = load_model(str(report.card_path), schema, "cpu", runtime="torch")
        onnx_model = load_model(str(report.card_path), schema, "cpu", runtime="onnx")
        onnx_path, entry = onnx_file(onnx_model.card, report.card_path)
        maps, noise = town_tiles(torch_model.gsd_m, tiles)
        if "agreement" in sections:
            result["agreement"] = agreement(torch_model, onnx_model, maps, noise)
            print(json.dumps(result["agreement"]), flush=True)
        if "speed" in sections:
            configs = speed_configs(torch_model, onnx_path, onnx_model, maps[:8], noise[:8])
            result["speed"] = speed(configs, 8, repeats)  # main() appends it to speed_runs
            print(json.dumps({k: v["median_ms_per_tile"] for k, v in result["speed"]["configs"].items()}, indent=1))
        if "render" in sections:
            torch.set_num_threads(min(2, os.cpu_count() or 1))
            result["render"] = render_times(report.card_path, {"torch": torch_model, "onnx": onnx_model}, repeats)
            print(json.dumps(result["render"]), flush=True)
        result["export"] = {"seconds": round(report.seconds, 1), "onnx_mb": round(onnx_path.stat().st_size / 1e6, 2),
                            "safetensors_mb": round(report.weights_path.stat().st_size / 1e6, 2), "card_entry": entry}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--tiles", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sections", default="agreement,speed,render,sizes,wheels")
    ap.add_argument("--update", action="store_true", help="merge into the existing --json file")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    result = json.loads(args.json.read_text()) if args.update and args.json.exists() else {}
    if sections & {"agreement", "speed", "render"}:
        measured = measure_runtimes(args.model, args.tiles, args.repeats, sections)
        if "speed" in measured:  # every run kept: the machine is shared, so runs differ
            measured["speed"]["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            result.setdefault("speed_runs", []).append(measured.pop("speed"))
        result.update(measured)
    if "sizes" in sections:
        result["install_sizes"] = install_sizes()
    if "wheels" in sections:
        result["wheel_download_mb"] = wheel_sizes()
        print(result["wheel_download_mb"])
    import onnxruntime
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}
    result.setdefault("meta", {}).update(meta)
    result["meta"].setdefault("commands", []).append("benchmarks/onnx_bench.py " + " ".join(sys.argv[1:]))
    result["meta"].pop("command", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
