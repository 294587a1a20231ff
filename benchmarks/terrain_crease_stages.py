"""Where the creases of the shaped terrain come from: the crease ratio of each shaping stage alone.

    .venv/bin/python benchmarks/terrain_crease_stages.py --dem-dir ../shared/data/dem [--out FILE.json]

On the held-out windows of ``geogan terrain-eval --dem-dir`` (same windows, classes, rivers and model run),
prints the crease ratio (:func:`geogan.terrain_eval.crease_ratio`) of the base field, its basins filled, the
model's band-passed detail, that detail smoothed at class edges, base + detail with flat lakes, then with the
rivers carved (no valleys), with the valleys, and the full ``shape_terrain`` output; plus the median depth
(m) the rivers are carved below the terrain, per window and averaged as terrain-eval averages.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geogan import terrain_relief as tr  # noqa: E402
from geogan.terrain_eval import (EvalSettings, crease_ratio, dem_windows, generate_raw_m, held_out_paths,  # noqa: E402
                                 load_terrain_model)
from geogan.terrain_hydro import edge_mask, gaussian_blur, priority_flood  # noqa: E402
from geogan.training.terrain_chips import DEFAULT_VAL_DEMS  # noqa: E402


def stages(classes: np.ndarray, raw_m: np.ndarray, gsd_m: float, p: tr.ReliefParams = tr.ReliefParams()) -> dict:
    """Each stage of :func:`geogan.terrain_relief.shape_terrain` as an elevation array (m)."""
    lakes, rivers = tr.split_water(classes, p.river_half_width_px)
    base = tr.base_field_m(classes, gsd_m)
    filled = priority_flood(base, lakes | edge_mask(base.shape), epsilon_m=p.fill_epsilon_m)[0]
    detail = tr.highpass_m(gaussian_blur(raw_m, p.detail_fine_px), p.detail_sigma_m / gsd_m)
    smooth = tr.smooth_class_edges(detail, classes, p.edge_blur_px, p.edge_band_px)
    flat = tr.flatten_lakes(filled + p.detail_gain * smooth, lakes, rivers)
    carved = tr.carve_rivers(flat, lakes, rivers, p.river_depth_m, p.river_drop_m)
    valleys = tr.widen_valleys(flat, carved, lakes, rivers, p, gsd_m)
    return {"base": base, "base_filled": filled, "detail": detail, "detail_edges_smoothed": smooth,
            "base_detail_flat_lakes": flat, "rivers_carved": carved, "valleys": valleys,
            "shaped": tr.shape_terrain(classes, raw_m, gsd_m, p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dem-dir", type=Path, default=REPO.parent / "shared" / "data" / "dem")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    settings = EvalSettings()
    model, schema = load_terrain_model("terrain")
    rows = []
    for path in held_out_paths(args.dem_dir, DEFAULT_VAL_DEMS):
        for i, win in enumerate(dem_windows(path, settings)):
            raw = generate_raw_m(model, schema, win, settings.seed)
            lakes, rivers = tr.split_water(win.classes)
            zs = stages(win.classes, raw, settings.gsd_m)
            row = {k: round(crease_ratio(z, win.classes, lakes | rivers, settings.gsd_m), 3) for k, z in zs.items()}
            row["real"] = round(crease_ratio(win.z_m, win.classes, lakes | rivers, settings.gsd_m), 3)
            cut = (zs["base_detail_flat_lakes"] - zs["rivers_carved"])[rivers]
            row["river_carve_median_m"] = round(float(np.median(cut)), 1) if cut.size else None
            rows.append({"window": f"{win.dem}#{i}", **row})
            print(json.dumps(rows[-1]), flush=True)
    mean = {k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 3) for k in rows[0] if k != "window"}
    print("mean", json.dumps(mean))
    if args.out is not None:
        command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/terrain_crease_stages.py " + " ".join(sys.argv[1:])
        args.out.write_text(json.dumps({"command": command, "per_window": rows, "mean": mean}, indent=1) + "\n")


if __name__ == "__main__":
    main()
