"""Chips: an orthophoto and a vector layer in different CRSs give aligned image and label chips."""

import json

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from geogan.errors import OutputError
from geogan.training.chips import ChipSet, make_chips


def test_feature_lands_on_the_same_pixels_in_image_and_label(tmp_path):
    # orthophoto in UTM 35N, 0.25 m pixels, grey ground with a bright 20 m x 20 m roof
    x0, y1, res, n = 390_000.0, 6_700_000.0, 0.25, 800  # 200 m square
    rgb = np.full((3, n, n), 90, dtype=np.uint8)
    roof = (slice(200, 280), slice(400, 480))  # rows/cols: 20 m x 20 m
    rgb[:, roof[0], roof[1]] = 250
    ortho = tmp_path / "ortho.tif"
    with rasterio.open(ortho, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs="EPSG:32635",
                       transform=from_origin(x0, y1, res, res)) as ds:
        ds.write(rgb)
    # the same roof as a building polygon in EPSG:4326
    t = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True)
    ring = [t.transform(x0 + c * res, y1 - r * res) for r, c in ((200, 400), (200, 480), (280, 480), (280, 400))]
    ring.append(ring[0])
    vec = tmp_path / "b.geojson"
    vec.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"class": "building"},
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}]}))
    index = make_chips(ortho, tmp_path / "chips", vectors=[vec], class_field="class", gsd_m=0.5, chip_px=64,
                       crs="EPSG:3857")
    assert len(index["chips"]) >= 9
    chips = ChipSet.load(tmp_path / "chips", "train")
    bright = chips.images.mean(-1) > 200
    building = chips.labels == chips.label_map.classes.index("building")
    assert building.sum() > 100
    iou = (bright & building).sum() / (bright | building).sum()
    assert iou > 0.85, iou
    with pytest.raises(OutputError, match="already holds chips"):  # stale chips would mix into a new set
        make_chips(ortho, tmp_path / "chips", vectors=[vec], class_field="class", gsd_m=1.0, chip_px=64)


def test_class_raster_and_dem_give_chips_with_heights_for_training(tmp_path):
    """A class GeoTIFF in EPSG:4326 and a DEM in UTM, onto an orthophoto grid in UTM 35N."""
    import torch

    from geogan.training.datasets import ChipsDataset

    x0, y1, res, n = 390_000.0, 6_700_000.0, 1.0, 256  # 256 m square at 1 m
    rgb = np.full((3, n, n), 60, dtype=np.uint8)
    rgb[:, :, 128:] = 200  # east half bright
    ortho = tmp_path / "ortho.tif"
    profile = dict(driver="GTiff", width=n, height=n, crs="EPSG:32635", transform=from_origin(x0, y1, res, res))
    with rasterio.open(ortho, "w", count=3, dtype="uint8", **profile) as ds:
        ds.write(rgb)
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", count=1, dtype="float32", **profile) as ds:
        ds.write(np.tile(np.linspace(100, 150, n, dtype=np.float32), (n, 1))[None])  # rises to the east
    # class raster in lon/lat: water (schema id 5) on the east half, 0 elsewhere
    t = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True)
    lon0, lat1 = t.transform(x0 - 20, y1 + 20)
    lon1, lat0 = t.transform(x0 + n * res + 20, y1 - n * res - 20)
    lonm, _ = t.transform(x0 + 128 * res, y1 - 128 * res)
    w = h = 600
    cls = np.zeros((1, h, w), np.uint8)
    cls[0, :, int((lonm - lon0) / (lon1 - lon0) * w):] = 5
    class_tif = tmp_path / "classes.tif"
    with rasterio.open(class_tif, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=rasterio.transform.from_bounds(lon0, lat0, lon1, lat1, w, h)) as ds:
        ds.write(cls)
    index = make_chips(ortho, tmp_path / "chips", class_raster=class_tif, gsd_m=2.0, chip_px=32, dem=dem)
    assert index["heights"] and len(index["chips"]) == 16  # 128 px grid / 32 px chips
    ds = ChipsDataset(tmp_path / "chips", split="all", flip=False)
    assert ds.has_heights and ds.classes[5] == "water" and len(ds) == 16
    for i in range(len(ds)):
        x, img, height = ds[i]
        assert x.shape == (12, 32, 32) and img.shape == (3, 32, 32) and height.shape == (1, 32, 32)
        bright = img.mean(0) > 0
        water = x[5] > 0
        assert (bright == water).float().mean() > 0.95  # class raster and photo agree pixel for pixel
        assert torch.all(height[0, :, 1:] >= height[0, :, :-1])  # heights rise to the east in every chip
        assert (height[0, :, -1] - height[0, :, 0]).mean() > 0.1  # ~12 m over a 64 m chip
    train_ds, val_ds = ChipsDataset(tmp_path / "chips"), ChipsDataset(tmp_path / "chips", split="val")
    assert len(train_ds) + len(val_ds) == 16 and len(val_ds) >= 1
