"""The style-reference model shipped in the package (geogan/data/models/style.*): a reference photo sets the
look, the class layout stays. The references are made here (textured green and sand images; renders by the
shipped default and recife models are too alike in colour to tell apart), so the test needs no data outside
the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

import geogan
from geogan.api import sample_osm_path
from geogan.evaluate import to_tensor_image
from geogan.sources import osm_file_bounds
from geogan.style_reference import load_style_segmenter
from geogan.zoo import builtin_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bbox():
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - 0.0025, cy - 0.0012, cx + 0.0025, cy + 0.0012


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Per reference (green, sand): the reference and the style model's render of the sample town with it."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("styled")
    kw = dict(osm=sample_osm_path(), bbox=_bbox(), gsd_m=0.5, seed=3)
    rng = np.random.default_rng(0)
    out = {}
    for name, colour in (("green", (60, 110, 50)), ("sand", (200, 170, 130))):
        ref = tmp / f"{name}.png"
        Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 20, (256, 256, 3)), 0, 255).astype(np.uint8)).save(ref)
        res = geogan.render(out_dir=tmp / f"style_{name}", model="style", style_ref=ref, **kw)
        out[name] = {"ref": np.moveaxis(np.asarray(Image.open(ref), dtype=np.float32), -1, 0),
                     "styled": rasterio.open(res.aerial).read().astype(np.float32),
                     "classes": rasterio.open(res.classes).read(1)}
    plain = geogan.render(out_dir=tmp / "default", model="style", **kw)  # its own look (card's default_style)
    out["default_look"] = {"styled": rasterio.open(plain.aerial).read().astype(np.float32)}
    return out


def test_shipped_card():
    card = json.loads((builtin_model_dir() / "style.json").read_text())
    assert card["arch_params"]["use_style_encoder"] and len(card["default_style"]) == card["arch_params"]["z_dim"]
    assert "CC BY-NC-SA 4.0" in card["license"] and "research" in card["license"]
    sr = card["metrics"]["style_reference"]
    for data_set in ("landcoverai", "recife"):  # on held-out pairs, the photo's own style beats the other set's
        assert sr[f"{data_set}_own"]["l1"] < sr[f"{data_set}_other_set_mean"]["l1"]
    assert (builtin_model_dir() / "style.safetensors").stat().st_size < 20_000_000


def test_models_lists_it_with_style_reference():
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "geogan.cli", "models"], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="250"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip("│ ").startswith("style "))
    assert "--style-ref" in line and "unet" in line


def test_reference_sets_the_colours(renders):
    mean = {k: {w: renders[k][w].mean((1, 2)) for w in ("ref", "styled")} for k in ("green", "sand")}
    a, b = mean["green"], mean["sand"]
    styled_shift, ref_shift = b["styled"] - a["styled"], b["ref"] - a["ref"]
    assert np.abs(styled_shift).max() > 20  # grey levels: visibly different looks
    # the look moves the way the reference does: cosine of the two colour shifts
    assert styled_shift @ ref_shift / (np.linalg.norm(styled_shift) * np.linalg.norm(ref_shift)) > 0.5


def _segmenter_accuracy(net, seg_classes, image: np.ndarray, class_map: np.ndarray) -> float:
    """Share of pixels where a segmenter reads the render as the class map says."""
    card = json.loads((builtin_model_dir() / "style.json").read_text())
    from geogan.classes import load_schema
    lut = np.array([seg_classes.index(card["schema_to_model"][n]) for n in load_schema().names])
    h, w = (s // 32 * 32 for s in image.shape[1:])
    x = to_tensor_image(np.moveaxis(image[:, :h, :w], 0, -1)[None].astype(np.uint8))
    with torch.inference_mode():
        pred = net(x).argmax(1).numpy()[0]
    return float((pred == lut[class_map[:h, :w]]).mean())


def test_class_layout_stays_across_styles(renders):
    """Same class map under both styles, and the segmenter that reads style references (``segmenter_styles``,
    trained on real LandCover.ai and Recife photos) reads each styled render not much worse than the style
    model's render in its own look (no reference photo). Measured 2026-12-06: own look 0.68, green 0.56, sand
    0.68. Until then the reader was the FCN-score judge (own 0.62, green 0.43, sand 0.39 in session 7); the
    judge retrained with colour casts reads the all-sand look as bare ground and roads (own 0.70, green 0.58,
    sand 0.30), so the reader of looks is the segmenter made for them. A weak check: this area is mostly open
    ground, and the same renders agree with the class map turned half a turn at 0.56 / 0.42 / 0.37 (own look /
    green / sand, session 7); the next test checks the layout directly, from the colours."""
    assert np.array_equal(renders["green"]["classes"], renders["sand"]["classes"])
    net, seg_card = load_style_segmenter()
    cm = renders["green"]["classes"]
    own = _segmenter_accuracy(net, seg_card["classes"], renders["default_look"]["styled"], cm)
    assert own > 0.5
    for name in ("green", "sand"):
        assert _segmenter_accuracy(net, seg_card["classes"], renders[name]["styled"], cm) > 0.55 * own


def _class_share_of_variance(image: np.ndarray, class_map: np.ndarray) -> float:
    """Eta squared: the share of the image's colour variance that the class map explains (between-class sum
    of squares over the total, RGB together); 0 when colours ignore the classes, 1 when each class is flat."""
    x = image.reshape(image.shape[0], -1).astype(np.float64)
    c = class_map.ravel()
    mean = x.mean(1)
    total = ((x - mean[:, None]) ** 2).sum()
    between = sum((c == k).sum() * ((x[:, c == k].mean(1) - mean) ** 2).sum() for k in np.unique(c))
    return float(between / total)


def test_class_layout_explains_the_colours_in_every_style(renders):
    """The layout test the segmenter cannot give on this town (see above): in each render, the class map
    explains a clear share of the colour variance, several times what the same class map explains when turned
    half a turn or shifted (same classes in the same proportions, in the wrong places). Measured in session 9:
    true map 0.17 / 0.27 / 0.18 (green / sand / own look), turned or shifted 0.004-0.036."""
    cm = renders["green"]["classes"]
    for name in ("green", "sand", "default_look"):
        image = renders[name]["styled"]
        true = _class_share_of_variance(image, cm)
        wrong = max(_class_share_of_variance(image, cm[::-1, ::-1]),
                    _class_share_of_variance(image, np.roll(cm, (37, 53), axis=(0, 1))))
        assert true > 0.1, name
        assert true > 3 * wrong, (name, true, wrong)


def test_a_red_roof_reference_makes_the_roofs_red(renders, tmp_path):
    """The per-class colour transfer with the shipped model and segmenter (geogan.style_reference): the
    reference is the model's own render of the town with its roofs turned red and its ground greener and
    darker (in CIELAB), so its true per-class colours are known. The ground's mean colour moves at least 60 %,
    the roofs' at least 50 % of the way from the own look toward the reference's (measured along the line
    between them); the roofs get redder, not darker (the style code alone made a red-roof town darker).
    Measured with the style segmenter segmenter_styles (trained on LandCover.ai + Recife photos): ground 0.63,
    roofs 0.55, roof a* +16.1; the FCN-score judge segmenter_landcoverai, which read references before, reads
    this generated reference better (0.79, 0.77, +25.2) but real held-out photos worse (roofs 0.68 / 0.37 vs
    0.96 / 0.73 of the way, benchmarks/style_transfer.py); the segmenter before it, which barely found
    buildings: 0.47 and 0.34."""
    from PIL import Image

    from geogan.classes import load_schema
    from geogan.colour_transfer import lab_to_srgb_u8, srgb_u8_to_lab
    from geogan.infer import load_model
    from geogan.style_reference import array_layouts, reference_colour_transfer

    schema = load_schema()
    model = load_model("style", schema, "cpu")
    own = renders["default_look"]["styled"].astype(np.uint8)
    classes = renders["green"]["classes"]
    ids = model.lut[classes]
    lab = srgb_u8_to_lab(own)
    lab[1][ids == 1] += 35  # roofs: a* (red) and b* (yellow) up
    lab[2][ids == 1] += 20
    lab[1][ids == 0] -= 10  # ground: greener, darker
    lab[0][ids == 0] -= 5
    ref = lab_to_srgb_u8(lab)
    ref_path = tmp_path / "red_roofs.png"
    Image.fromarray(np.moveaxis(ref, 0, -1)).save(ref_path)
    transfer = reference_colour_transfer(model, schema, ref_path, area=array_layouts(classes))
    styled = transfer(own, classes)
    for k, least in ((0, 0.6), (1, 0.5)):  # background, building
        d, s, r = (a[:, ids == k].astype(float).mean(1) for a in (own, styled, ref))
        assert (s - d) @ (r - d) / ((r - d) @ (r - d)) > least, (k, d, s, r)
    roof_before, roof_after = srgb_u8_to_lab(own)[:, ids == 1].mean(1), srgb_u8_to_lab(styled)[:, ids == 1].mean(1)
    assert roof_after[1] > roof_before[1] + 15 and roof_after[0] > roof_before[0] - 3
