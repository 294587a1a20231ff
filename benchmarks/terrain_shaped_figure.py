"""Picture for docs/terrain.md: held-out DEM windows as class map | model raw | shaped | real (hillshades).

    .venv/bin/python benchmarks/terrain_shaped_figure.py --dem-dir ../shared/data/dem [--out docs/terrain_shaped.jpg]

One row per held-out DEM (its first window, as ``geogan terrain-eval --dem-dir`` cuts it), each panel
``--panel-px`` pixels: the class map (terrain classes with rivers), then hillshades of the model's raw heights
(as ``render`` wrote them before shaping), of the shaped terrain and of the real DEM, all lit the same way
and with water drawn in blue on the hillshades.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geogan.terrain import hillshade  # noqa: E402
from geogan.terrain_eval import (EvalSettings, dem_windows, generate_raw_m, held_out_paths,  # noqa: E402
                                 load_terrain_model)
from geogan.terrain_relief import shape_terrain  # noqa: E402
from geogan.training.terrain_chips import ALBEDO, DEFAULT_VAL_DEMS, TERRAIN_CLASSES  # noqa: E402

WATER_RGB = np.array([70, 110, 170], np.float32)


def class_rgb(classes: np.ndarray) -> np.ndarray:
    cols = np.array([ALBEDO[n] for n in TERRAIN_CLASSES], np.uint8)
    cols[TERRAIN_CLASSES.index("water")] = WATER_RGB.astype(np.uint8)
    return cols[classes]


def shaded(z: np.ndarray, classes: np.ndarray, gsd_m: float) -> np.ndarray:
    hs = hillshade(z.astype(np.float32), (gsd_m, gsd_m)).astype(np.float32)
    rgb = np.repeat(hs[..., None], 3, -1)
    water = classes == TERRAIN_CLASSES.index("water")
    rgb[water] = 0.5 * rgb[water] + 0.5 * WATER_RGB
    return rgb.clip(0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dem-dir", type=Path, default=REPO.parent / "shared" / "data" / "dem")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "terrain_shaped.jpg")
    ap.add_argument("--panel-px", type=int, default=300)
    args = ap.parse_args()
    settings = EvalSettings(windows_per_dem=1)
    model, schema = load_terrain_model("terrain")
    rows = []
    for path in held_out_paths(args.dem_dir, DEFAULT_VAL_DEMS):
        (win,) = dem_windows(path, settings)[:1]
        raw = generate_raw_m(model, schema, win, settings.seed)
        shaped_m = shape_terrain(win.classes, raw, settings.gsd_m)
        panels = [class_rgb(win.classes)] + [shaded(z, win.classes, settings.gsd_m) for z in (raw, shaped_m, win.z_m)]
        rows.append([Image.fromarray(p).resize((args.panel_px, args.panel_px), Image.LANCZOS) for p in panels])
        print(f"{win.dem}: window {win.classes.shape}")
    p, gap, head = args.panel_px, 6, 22
    sheet = Image.new("RGB", (4 * p + 3 * gap, head + len(rows) * (p + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(("classes (+ rivers)", "model raw (before)", "shaped (after)", "real DEM")):
        draw.text((j * (p + gap) + 4, 4), title, fill="black")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            sheet.paste(im, (j * (p + gap), head + i * (p + gap)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
