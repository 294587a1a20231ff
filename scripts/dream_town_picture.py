"""docs/dream_*.jpg: a dreamed town's class map (left) and its render (right), from a `geogan dream` output folder.

    .venv/bin/python scripts/dream_town_picture.py OUT docs/dream_town.jpg [WIDTH] [LEFT LABEL] [RIGHT LABEL]
"""
import sys

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from geogan.classes import load_schema
from geogan.dream import palette_rgb

out, dst = sys.argv[1], sys.argv[2]
width = int(sys.argv[3]) if len(sys.argv) > 3 else 700
labels = (sys.argv[4] if len(sys.argv) > 4 else "dreamed town (class map)",
          sys.argv[5] if len(sys.argv) > 5 else "rendered by the default model")
with rasterio.open(f"{out}/dream_classes.tif") as ds:
    cls = palette_rgb(ds.read(1), load_schema())
with rasterio.open(f"{out}/aerial.tif") as ds:
    rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
h = round(cls.shape[0] * width / cls.shape[1])
canvas = Image.new("RGB", (2 * width + 8, h), (255, 255, 255))
canvas.paste(Image.fromarray(cls).resize((width, h), Image.LANCZOS), (0, 0))
canvas.paste(Image.fromarray(rgb).resize((width, h), Image.LANCZOS), (width + 8, 0))
d = ImageDraw.Draw(canvas)
for x, text in ((6, labels[0]), (width + 14, labels[1])):
    d.rectangle([x - 3, 3, x + 6 * len(text) + 6, 19], fill=(255, 255, 255))
    d.text((x, 5), text, fill=(0, 0, 0))
canvas.save(dst, quality=85)
print(canvas.size)
