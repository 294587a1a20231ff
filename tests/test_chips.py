"""Chips: an orthophoto and a vector layer in different CRSs give aligned image and label chips."""

import json

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

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
