"""Fit the base-field coefficients of geogan.terrain_relief on windows of the TRAINING DEMs only.

    .venv/bin/python benchmarks/terrain_fit.py --dem-dir ../shared/data/dem [--out benchmarks/results/terrain_fit.json]

The held-out DEMs (geogan.training.terrain_chips.DEFAULT_VAL_DEMS) and the DEMs terrain-chips skips
(coarser than 100 m, no CRS) are left out. Each DEM gives up to two void-free 768 px windows at 30 m with the
same classes and rivers as ``geogan terrain-eval``. Prints the coefficient array to paste into
``BASE_COEF_M`` and writes it, with the windows used and the in-sample fit, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geogan.errors import InputError  # noqa: E402
from geogan.terrain_eval import EvalSettings, EvalWindow, dem_windows  # noqa: E402
from geogan.terrain_relief import base_field_m, fit_relief, fit_relief_scale  # noqa: E402
from geogan.training.terrain_chips import DEFAULT_VAL_DEMS, source_spacing_m  # noqa: E402


def training_windows(dem_dir: Path, settings: EvalSettings):
    for path in sorted(dem_dir.glob("*.tif")):
        if path.name.startswith("landcover_") or any(path.name.startswith(v) for v in DEFAULT_VAL_DEMS):
            continue
        try:
            if source_spacing_m(path) > 100.0:
                continue
            yield from dem_windows(path, settings)
        except InputError as exc:
            print(f"skip {path.name}: {exc}", file=sys.stderr)


def cached_windows(cache: Path | None, dem_dir: Path, settings: EvalSettings) -> list[EvalWindow]:
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        names = [str(n) for n in data["names"]]
        return [EvalWindow(n, data[f"z{i}"], data[f"c{i}"], None, None) for i, n in enumerate(names)]
    wins = list(training_windows(dem_dir, settings))
    if cache is not None:
        arrays = {f"z{i}": w.z_m for i, w in enumerate(wins)} | {f"c{i}": w.classes for i, w in enumerate(wins)}
        np.savez_compressed(cache, names=np.array([w.dem for w in wins]), **arrays)
    return wins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dem-dir", type=Path, default=REPO.parent / "shared" / "data" / "dem")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "terrain_fit.json")
    ap.add_argument("--cache", type=Path, default=None, help="npz of the windows: written once, then read")
    args = ap.parse_args()
    settings = EvalSettings()
    t0 = time.time()
    wins = cached_windows(args.cache, args.dem_dir, settings)
    pairs = [(w.classes, w.z_m) for w in wins]
    coef = fit_relief(pairs, settings.gsd_m)
    scale = fit_relief_scale(pairs, settings.gsd_m, coef)
    corr, ratio = [], []
    for w in wins:
        b = base_field_m(w.classes, settings.gsd_m, coef, scale)
        corr.append(float(np.corrcoef(b.ravel(), w.z_m.ravel())[0, 1]) if b.std() > 0 else float("nan"))
        ratio.append(float(b.std() / max(w.z_m.std(), 1e-9)))
    print("BASE_COEF_M = np.array(" + json.dumps(np.round(coef, 1).tolist()) + ")")
    print(f"RELIEF_SCALE = ({scale[0]:.3f}, {scale[1]:.3f}); std ratio median {np.median(ratio):.2f}")
    print(f"{len(wins)} windows from {len({w.dem for w in wins})} DEMs; in-sample corr median {np.nanmedian(corr):.3f}"
          f" ({time.time() - t0:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"coef_m": np.round(coef, 1).tolist(), "relief_scale": [round(v, 3) for v in scale],
                                    "windows": [w.dem for w in wins], "std_ratio": [round(r, 3) for r in ratio],
                                    "in_sample_corr": [round(c, 3) for c in corr],
                                    "settings": vars(settings) if hasattr(settings, "__dict__") else None},
                                   indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
