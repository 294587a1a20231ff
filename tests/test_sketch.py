"""Hand-painted sketches: palette colours (anti-aliased edges tolerated) -> classes -> render."""

import numpy as np
import pytest
import rasterio
from PIL import Image, ImageDraw

import geogan
from geogan.errors import InputError
from geogan.sketch import palette_classes, read_sketch


def _painting(schema, size=200, antialias=True):
    """Background, a water band, a building and a road, drawn at 4x and downsampled (anti-aliased)."""
    col = {c.name: c.color for c in schema.classes}
    big = size * 4 if antialias else size
    k = big // size
    im = Image.new("RGB", (big, big), col["background"])
    d = ImageDraw.Draw(im)
    d.rectangle([0, 150 * k, big, 180 * k], fill=col["water"])
    d.ellipse([30 * k, 30 * k, 90 * k, 80 * k], fill=col["building"])
    d.line([0, 20 * k, big, 120 * k], fill=col["road"], width=8 * k)
    d.polygon([(120 * k, 20 * k), (190 * k, 40 * k), (170 * k, 110 * k)], fill=col["woodland"])
    return im.resize((size, size), Image.LANCZOS) if antialias else im


def test_every_antialiased_pixel_maps_to_a_schema_class(schema, tmp_path):
    im = _painting(schema)
    rgb = np.asarray(im)
    palette = np.array([c.color for c in schema.classes])
    off_palette = ~(rgb[:, :, None, :] == palette[None, None]).all(-1).any(-1)
    assert off_palette.sum() > 200  # the painting really has blended edge pixels
    classes = palette_classes(rgb, schema)
    assert classes.dtype == np.uint8 and classes.max() < len(schema.classes)
    sharp = palette_classes(np.asarray(_painting(schema, antialias=False)), schema)
    # the anti-aliased painting agrees with the sharp one except on a thin border
    assert (classes == sharp).mean() > 0.97
    # blended pixels take one of the classes meeting there, never a third colour
    names = {schema.by_id(int(i)).name for i in np.unique(classes)}
    assert names == {"background", "water", "building", "road", "woodland"}


def test_render_from_a_sketch(schema, tmp_path, tiny_model):
    path = tmp_path / "sketch.png"
    _painting(schema).save(path)
    bbox = (25.70, 60.40, 25.702, 60.401)  # ~111 m x 111 m
    res = geogan.render(sketch=path, bbox=bbox, out_dir=tmp_path / "o", model=str(tiny_model), tile_px=128,
                        overlap_px=32)
    with rasterio.open(res.classes) as ds:
        classes = ds.read(1)
    water = schema.by_name("water").id
    # the water band sits 150..180/200 down the sketch: the same fraction of the output grid
    rows = np.nonzero((classes == water).mean(1) > 0.9)[0]
    assert rows.min() / classes.shape[0] == pytest.approx(150 / 200, abs=0.02)
    assert rows.max() / classes.shape[0] == pytest.approx(180 / 200, abs=0.02)


def test_bad_sketches(schema, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_sketch(tmp_path / "none.png", schema)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="not a readable image"):
        read_sketch(bad, schema)
    with pytest.raises(InputError, match="--bbox"):
        geogan.render(sketch=bad, out_dir=tmp_path / "o")
