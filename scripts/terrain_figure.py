"""docs/terrain_render.jpg: held-out DEM windows -> derived class map -> `geogan render --model terrain`
(sketch + terrain rules) -> class map | generated texture (aerial.tif) | hillshade of generated height.tif |
hillshade of the real DEM (reference, not a model output)."""
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from geogan.api import render
from geogan.classes import load_schema
from geogan.terrain import hillshade
from geogan.training.terrain_chips import TERRAIN_CLASSES, classify_terrain, reproject_dem

model, out_jpg, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
DEM = Path("../shared/data/dem")
rules = Path("geogan/data/terrain_rules.toml")
schema = load_schema(rules)
to_schema = {"water": "water", "woodland": "woodland", "grass": "grass", "farmland": "farmland", "rock": "bare",
             "snow": "snow", "sand": "sand"}
pal = np.array([schema.by_name(to_schema[c]).color for c in TERRAIN_CLASSES], np.uint8)
scenes = [("turkey-ararat-volcano_astergdem30.tif", "center"),
          ("scotland-borders-coast_srtm3_n55w003.tif", "coast")]
N = 256
rows = []
for name, where in scenes:
    dem = reproject_dem(DEM / name, 30.0)
    cls = classify_terrain(dem.z, 30.0, dem.lat)
    valid = np.isfinite(dem.z)
    h, w = dem.z.shape
    best, pos = -1, (0, 0)
    for r in range(0, h - N, 32):
        for c in range(0, w - N, 32):
            if not valid[r:r + N, c:c + N].all():
                continue
            win = cls[r:r + N, c:c + N]
            score = len(np.unique(win)) + (0.001 * dem.z[r:r + N, c:c + N].std() if where == "center" else 0)
            if where == "coast":
                wshare = (win == 0).mean()
                score += (3 if 0.1 <= wshare <= 0.35 else 0) + 2 * ((win == 6).mean() > 0)
            if score > best:
                best, pos = score, (r, c)
    r, c = pos
    win_cls, win_z = cls[r:r + N, c:c + N], dem.z[r:r + N, c:c + N]
    sketch = work / f"{where}_sketch.png"
    work.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pal[win_cls]).save(sketch)
    x0, y0 = dem.transform * (c, r)
    bbox = (x0, y0 - N * 30.0, x0 + N * 30.0, y0)
    crs = dem.crs.to_string()
    res = render(bbox=bbox, bbox_crs=crs, crs=crs, gsd_m=30.0, out_dir=work / where, model=model, sketch=sketch,
                 rules=rules, device="cpu", hillshade=True, overwrite=True, seed=1)
    with rasterio.open(res.aerial) as ds:
        tex = ds.read().transpose(1, 2, 0)
    with rasterio.open(res.height) as ds:
        hgt = ds.read(1)
    gen_hs = hillshade(hgt, (30.0, 30.0))
    real_hs = hillshade(win_z, (30.0, 30.0))
    print(name, "window", pos, "generated height m: min %.0f max %.0f std %.0f; real relief std %.0f" %
          (hgt.min(), hgt.max(), hgt.std(), win_z.std()))
    g3 = lambda a: np.repeat(a[..., None], 3, -1)
    rows.append(np.concatenate([pal[win_cls], tex, g3(gen_hs), g3(real_hs)], 1))
img = Image.fromarray(np.concatenate(rows, 0))
d = ImageDraw.Draw(img)
for i, t in enumerate(["classes (from held-out DEM)", "generated texture", "hillshade: generated height",
                       "hillshade: real DEM (ref)"]):
    d.rectangle([i * N, 0, i * N + 7 * len(t) + 6, 13], fill=(0, 0, 0))
    d.text((i * N + 3, 1), t, fill=(255, 255, 255))
img.save(out_jpg, quality=90)
print("wrote", out_jpg)
