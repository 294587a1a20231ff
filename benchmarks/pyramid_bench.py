"""The resolution pyramid's benchmark rows (run by benchmarks/bench.py --only pyramid,look, or alone):

    .venv/bin/python benchmarks/pyramid_bench.py --pairs ../shared/data/landcoverai-pairs --json out.json

* cost: renders of about 1 output MP at 0.5, 2 and 10 m (``--model``, default 'default': each GSD drawn by
  the pyramid member geogan picks), each in a fresh process timed twice (the second, warm, counts), on the
  sample town alone and on the sample town repeated over the area (a town's density of features everywhere,
  benchmarks/bench.py's ``_synthetic_town``); seconds and generator tiles per output MP, and their ratio to
  the 0.5 m render's; plus the issue's check, a 10 m render of 35 km2 (cold and warm);
* look: the held-out LandCover.ai pairs (numbers >= 896), each cropped to 240 px (120 m) and laid side by
  side as one sketch, rendered at 10 m (and 2 m) by the pyramid and by the 0.5 m model given by path (its
  picture averaged onto the output grid); each pair's output cell (12 px at 10 m) and its real photo
  averaged the same way are scaled to 128 px and described by the FCN-score segmenter's pooled features
  (geogan.evaluate); FID and KID of each render against the real cells, and the pyramid's FID over the
  0.5 m model's (target: within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CELL_PX = 240  # 0.5 m pixels of each pair kept (120 m: whole 10 m and 2 m pixels)
GRID_COLS = 8
LOOK_UTM = "EPSG:32633"  # the sketch is laid near the zone's central meridian (15 E): scale factor < 1
LOOK_ORIGIN = (500_000.0, 5_800_000.0)  # on whole multiples of every GSD used


def _cost_render(bbox, osm: Path, out: Path, model: str, gsd_m: float) -> dict:
    from bench import render_in_subprocess
    return render_in_subprocess(bbox, osm, out, model, [f"gsd_m={gsd_m!r}", "crs='EPSG:32635'"], renders=2)


def cost_rows(tmp: Path, model: str = "default", out_mp: float = 1.0, check_km2: float = 35.0) -> dict:
    """Seconds and tiles per output MP at 0.5, 2 and 10 m, on the sample town alone (its 1 km2 of features,
    open ground around: the generator's share) and on the town repeated over the area (``town``: a town's
    features everywhere, 400x more of them per output pixel at 10 m than at 0.5 m); and 10 m renders of
    ``check_km2`` on both."""
    from bench import _synthetic_town, _town_bbox

    from geogan.api import sample_osm_path
    res: dict = {}
    for data in ("sample", "town"):
        for gsd_m in (0.5, 2.0, 10.0):
            km2 = out_mp * gsd_m ** 2
            osm = _synthetic_town(km2, tmp / f"town_{gsd_m:g}.osm") if data == "town" else sample_osm_path()
            r = _cost_render(_town_bbox(km2), osm, tmp / f"cost_{data}_{gsd_m:g}", model, gsd_m)
            mp = r["shape"][0] * r["shape"][1] / 1e6
            key = f"{data}_{gsd_m:g}m".replace(".", "_")
            res[f"cost_s_per_out_mp_{key}"] = r["warm_seconds"] / mp
            res[f"cost_cold_s_per_out_mp_{key}"] = r["seconds"] / mp
            res[f"cost_tiles_per_out_mp_{key}"] = r["tiles"] / mp
            res[f"cost_cpu_s_per_out_mp_{key}"] = r["warm_cpu_seconds"] / mp  # process CPU: less load-swayed
            res[f"cost_load_1min_{key}"] = r["load_1min"]
            res[f"cost_area_km2_{key}"] = km2
        for key in ("2m", "10m"):
            per = {k: res[f"cost_{k}_per_out_mp_{data}_{key}"] / res[f"cost_{k}_per_out_mp_{data}_0_5m"]
                   for k in ("s", "tiles", "cpu_s")}
            res[f"cost_ratio_{data}_{key}_vs_0_5m"] = per["s"]
            res[f"cost_cpu_ratio_{data}_{key}_vs_0_5m"] = per["cpu_s"]
            res[f"cost_tiles_ratio_{data}_{key}_vs_0_5m"] = per["tiles"]
        osm = _synthetic_town(check_km2, tmp / "town_check.osm") if data == "town" else sample_osm_path()
        r = _cost_render(_town_bbox(check_km2), osm, tmp / f"check_{data}", model, 10.0)
        res.update({f"render_10m_{data}_seconds": r["seconds"], f"render_10m_{data}_warm_seconds": r["warm_seconds"],
                    f"render_10m_{data}_tiles": r["tiles"], f"render_10m_{data}_shape": r["shape"],
                    f"render_10m_{data}_warm_cpu_seconds": r["warm_cpu_seconds"],
                    f"render_10m_{data}_load_1min": r["load_1min"]})
    res["render_10m_km2"] = check_km2
    return res


# ---------------------------------------------------------------- the look
def _val_pairs(pairs_dir: Path):
    from geogan.evaluate import split_number
    from geogan.training.pairs import PairSet, load_label_map
    lm = load_label_map("landcoverai")
    return PairSet.load(pairs_dir, lm, "val", split_number(pairs_dir))


def _sketch(labels: np.ndarray, class_names, path: Path) -> tuple[int, int]:
    """The pairs' labels (N, CELL_PX, CELL_PX) laid out GRID_COLS wide as a sketch PNG; (rows, cols) of cells."""
    from PIL import Image

    from geogan.classes import load_schema
    schema = load_schema()
    colours = np.array([schema.by_name(c).color for c in class_names], dtype=np.uint8)
    rows = int(np.ceil(len(labels) / GRID_COLS))
    mosaic = np.zeros((rows * CELL_PX, GRID_COLS * CELL_PX), np.uint8)
    mosaic[:] = class_names.index("background")
    for i, lab in enumerate(labels):
        r, c = divmod(i, GRID_COLS)
        mosaic[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX] = lab
    Image.fromarray(colours[mosaic]).save(path)
    return rows, GRID_COLS


def _cells(image: np.ndarray, n: int, cell: int) -> np.ndarray:
    """The first ``n`` cells (N, cell, cell, 3) of a mosaic laid out GRID_COLS wide."""
    out = []
    for i in range(n):
        r, c = divmod(i, GRID_COLS)
        out.append(image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell])
    return np.stack(out)


def _features(net, cells: np.ndarray, size_px: int = 128) -> np.ndarray:
    from geogan.evaluate import _segment, to_tensor_image
    x = torch.nn.functional.interpolate(to_tensor_image(cells), size=(size_px, size_px), mode="bilinear",
                                        align_corners=False)
    return _segment(net, x)[1]


def _render_look(sketch: Path, shape_cells: tuple[int, int], gsd_m: float, model: str,
                 out: Path, seed: int = 1) -> tuple[np.ndarray, str, float]:
    """(RGB of the render, the GEOGAN_MODEL it names, seconds)."""
    import rasterio

    import geogan
    rows, cols = shape_cells
    x0, y0 = LOOK_ORIGIN
    bbox = (x0, y0, x0 + cols * CELL_PX * 0.5, y0 + rows * CELL_PX * 0.5)
    t = time.perf_counter()
    r = geogan.render(sketch=sketch, bbox=bbox, bbox_crs=LOOK_UTM, crs=LOOK_UTM, res=gsd_m, out_dir=out,
                      model=model, overwrite=True, force=True, seed=seed)
    with rasterio.open(r.aerial) as ds:
        return np.moveaxis(ds.read([1, 2, 3]), 0, -1), ds.tags().get("GEOGAN_MODEL", "?"), time.perf_counter() - t


def look_rows(pairs_dir: Path, tmp: Path, model: str = "default", gsds=(10.0, 2.0), seed: int = 1) -> dict:
    """FID/KID on segmenter features of the pyramid's and the 0.5 m model's renders vs the real photos, all
    at the same coarse GSD."""
    from geogan.evaluate import default_segmenter_path, load_segmenter
    from geogan.metrics import fid, kid
    from geogan.training.pyramid import box_mean
    from geogan.zoo import resolve_model

    val = _val_pairs(pairs_dir)
    n = len(val)
    sketch = tmp / "look_sketch.png"
    shape_cells = _sketch(val.labels[:, :CELL_PX, :CELL_PX], list(val.label_map.classes), sketch)
    net, _ = load_segmenter(default_segmenter_path())
    base = str(resolve_model(model))  # by path: the model itself, no pyramid member
    res: dict = {"look_pairs": n, "look_cell_m": CELL_PX * 0.5}
    for gsd_m in gsds:
        factor = int(round(gsd_m / 0.5))
        cell = CELL_PX // factor
        key = f"{gsd_m:g}m"
        real = _features(net, np.stack([box_mean(im[:CELL_PX, :CELL_PX], factor) for im in val.images]))
        for label, ref in (("pyramid", model), ("base", base)):
            image, used, secs = _render_look(sketch, shape_cells, gsd_m, ref, tmp / f"look_{label}_{key}", seed)
            feats = _features(net, _cells(image, n, cell))
            res[f"look_{key}_{label}_model"] = used
            res[f"look_{key}_{label}_fid"] = fid(feats, real)
            res[f"look_{key}_{label}_kid"] = kid(feats, real)[0]
            res[f"look_{key}_{label}_render_s"] = secs
        res[f"look_{key}_fid_ratio"] = res[f"look_{key}_pyramid_fid"] / res[f"look_{key}_base_fid"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, help="LandCover.ai pairs (for the look rows)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--only", default="cost,look")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {"cpu_count": os.cpu_count(), "torch_threads": args.threads}
    with tempfile.TemporaryDirectory() as d:
        if "cost" in args.only:
            res.update(cost_rows(Path(d), args.model))
        if "look" in args.only:
            if args.pairs is None:
                ap.error("the look rows need --pairs")
            res.update(look_rows(args.pairs, Path(d), args.model))
    for k, v in res.items():
        print(f"{k:>36}: {v:.4g}" if isinstance(v, float) else f"{k:>36}: {v}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
