"""geogan in a notebook: GeoDataFrame in, xarray.Dataset out (run by the tests: tests/test_api_notebook.py).

    .venv/bin/python examples/notebook_example.py [OUT_DIR]
"""

import sys
from pathlib import Path

import geopandas as gpd
from shapely.geometry import LineString, box

import geogan

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

# a hand-made scene in UTM 35N: a park with a pond, a house and a road (metres)
x, y = 386_000.0, 6_697_000.0
scene = gpd.GeoDataFrame(
    {"class": ["grass", "water", "building", "road"]},
    geometry=[box(x, y, x + 120, y + 120), box(x + 20, y + 20, x + 60, y + 50), box(x + 80, y + 70, x + 95, y + 85),
              LineString([(x - 20, y + 100), (x + 140, y + 100)])],
    crs="EPSG:32635",
)
bbox = (x, y, x + 120, y + 120)

ds = geogan.render(osm=scene, bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5, out_dir=None,
                   tile_px=256, overlap_px=64, seed=1)
print(ds)
print("CRS:", ds.rio.crs, "shape:", dict(ds.sizes))
print("class fractions:", {int(k): round(float((ds.classes == k).mean()), 3) for k in (1, 2, 5, 7)})

# save with the usual rioxarray calls
ds.aerial.rio.to_raster(out / "aerial.tif")
ds.classes.rio.to_raster(out / "classes.tif")
print("saved", sorted(p.name for p in out.iterdir()))
