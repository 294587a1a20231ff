"""docs/dream_town.jpg: the dreamed class map (left) and its render (right), both from `geogan dream`."""
import sys
import numpy as np, rasterio
from PIL import Image, ImageDraw
from geogan.dream import palette_rgb
from geogan.classes import load_schema
out = sys.argv[1]; dst = sys.argv[2]; width = int(sys.argv[3]) if len(sys.argv) > 3 else 760
s = load_schema()
with rasterio.open(f"{out}/dream_classes.tif") as ds:
    cls = palette_rgb(ds.read(1), s)
with rasterio.open(f"{out}/aerial.tif") as ds:
    rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
h = round(cls.shape[0] * width / cls.shape[1])
a = Image.fromarray(cls).resize((width, h), Image.NEAREST)
b = Image.fromarray(rgb).resize((width, h), Image.LANCZOS)
canvas = Image.new("RGB", (2 * width + 8, h), (255, 255, 255))
canvas.paste(a, (0, 0)); canvas.paste(b, (width + 8, 0))
d = ImageDraw.Draw(canvas)
for x, text in ((6, "dreamed class map (DCGAN, 4 m)"), (width + 14, "rendered by the default model (1 m)")):
    d.rectangle([x - 3, 3, x + 7 * len(text) + 3, 19], fill=(255, 255, 255))
    d.text((x, 5), text, fill=(0, 0, 0))
canvas.save(dst, quality=88)
print(canvas.size)
