"""--style-ref: a reference aerial image sets the look (SPADE or U-Net style encoder); the class layout stays."""

import numpy as np
import pytest
import rasterio
from PIL import Image

import geogan
from conftest import make_tiny_style_model
from geogan.api import sample_osm_path
from geogan.errors import InputError
from geogan.sources import osm_file_bounds


@pytest.fixture(scope="module", params=["spade", "unet"])
def style_model(request, tmp_path_factory):
    return make_tiny_style_model(tmp_path_factory.mktemp(request.param) / request.param, request.param)


def _bbox():
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - 0.001, cy - 0.0005, cx + 0.001, cy + 0.0005


def test_style_reference_changes_colours_but_not_layout(tmp_path, style_model):
    rng = np.random.default_rng(0)
    refs = {}
    for name, colour in (("green", (40, 140, 40)), ("sand", (220, 190, 120))):
        img = np.clip(np.array(colour) + rng.normal(0, 20, (256, 256, 3)), 0, 255).astype(np.uint8)
        refs[name] = tmp_path / f"{name}.png"
        Image.fromarray(img).save(refs[name])
    out = {}
    for name, ref in refs.items():
        res = geogan.render(osm=sample_osm_path(), bbox=_bbox(), out_dir=tmp_path / name, model=str(style_model),
                            tile_px=128, overlap_px=32, style_ref=ref, seed=1)
        out[name] = (rasterio.open(res.aerial).read().astype(float), rasterio.open(res.classes).read(1))
    (a, ca), (b, cb) = out["green"], out["sand"]
    assert np.array_equal(ca, cb)  # same class layout
    assert np.abs(a.mean((1, 2)) - b.mean((1, 2))).max() > 1.0  # measurably different colours


def test_style_reference_needs_a_style_encoder(tmp_path, tiny_model):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(ref)
    with pytest.raises(InputError, match="no style encoder"):
        geogan.render(osm=sample_osm_path(), bbox=_bbox(), out_dir=tmp_path / "o", model=str(tiny_model),
                      style_ref=ref)


def test_style_reference_is_read_at_the_model_gsd_and_averaged_over_crops(tmp_path, style_model):
    """A georeferenced reference at twice the model's GSD is resampled to it before cropping; a plain picture
    is taken as it is; the latent of a photo half green, half sand is the mean of its halves' latents (one
    256 px crop in each half)."""
    import torch
    from rasterio.transform import from_origin

    from geogan.classes import load_schema
    from geogan.infer import _reference_pixels, encode_style, load_model
    model = load_model(str(style_model), load_schema(), "cpu")
    img = np.zeros((3, 300, 600), np.uint8)
    img[:, :, :300] = np.array([40, 140, 40], np.uint8)[:, None, None]  # green | sand, each uniform
    img[:, :, 300:] = np.array([220, 190, 120], np.uint8)[:, None, None]
    tif = tmp_path / "ref.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=600, height=300, count=3, dtype="uint8", crs="EPSG:3857",
                       transform=from_origin(0, 0, 2 * model.gsd_m, 2 * model.gsd_m)) as ds:
        ds.write(img)
    assert _reference_pixels(tif, model.gsd_m).shape == (3, 600, 1200)
    png = tmp_path / "ref.png"
    Image.fromarray(img.transpose(1, 2, 0)).save(png)
    assert _reference_pixels(png, model.gsd_m).shape == (3, 300, 600)
    halves = []
    for sl in (slice(0, 300), slice(300, 600)):
        p = tmp_path / f"half{sl.start}.png"
        Image.fromarray(np.ascontiguousarray(img[:, :, sl].transpose(1, 2, 0))).save(p)
        halves.append(encode_style(model, p))
    whole = encode_style(model, png)
    assert whole.shape == (1, 8) and not torch.allclose(halves[0], halves[1], atol=1e-3)
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2, atol=1e-4, rtol=1e-4)


def test_card_default_style_is_the_look_without_a_reference(tmp_path, style_model):
    """A style-encoder model whose card has ``default_style`` renders with that latent when no --style-ref is
    given: the same pixels as a render with a reference encoding to it."""
    import json
    import shutil

    from geogan.classes import load_schema
    from geogan.infer import encode_style, load_model
    rng = np.random.default_rng(5)
    ref = tmp_path / "sand.png"
    Image.fromarray(np.clip(np.array((220, 190, 120)) + rng.normal(0, 20, (256, 256, 3)), 0, 255)
                    .astype(np.uint8)).save(ref)
    z = encode_style(load_model(str(style_model), load_schema(), "cpu"), ref)
    card_path = tmp_path / "styled.json"
    shutil.copy(style_model.with_suffix(".safetensors"), card_path.with_suffix(".safetensors"))
    card = json.loads(style_model.with_suffix(".json").read_text())
    card["default_style"] = [float(v) for v in z[0]]
    card_path.write_text(json.dumps(card))
    kw = dict(osm=sample_osm_path(), bbox=_bbox(), tile_px=128, overlap_px=32, seed=1)
    plain = geogan.render(out_dir=tmp_path / "plain", model=str(style_model), **kw)
    with_ref = geogan.render(out_dir=tmp_path / "ref", model=str(style_model), style_ref=ref, **kw)
    default = geogan.render(out_dir=tmp_path / "default", model=str(card_path), **kw)
    read = lambda r: rasterio.open(r.aerial).read()  # noqa: E731
    assert np.array_equal(read(default), read(with_ref))
    assert not np.array_equal(read(default), read(plain))


def test_evaluate_scores_the_look_render_uses(tmp_path, style_model):
    """`geogan evaluate --model style` generates with the card's ``default_style`` (what `render` uses without
    --style-ref), not the zero code the generator falls back to without a style."""
    import json
    import shutil

    import torch

    from geogan.evaluate import ModelGenerator, one_hot
    card_path = tmp_path / "styled.json"
    shutil.copy(style_model.with_suffix(".safetensors"), card_path.with_suffix(".safetensors"))
    card = json.loads(style_model.with_suffix(".json").read_text())
    card["default_style"] = [1.5 * (-1) ** i for i in range(card["arch_params"]["z_dim"])]
    card_path.write_text(json.dumps(card))
    gen = ModelGenerator(str(card_path))
    labels = np.random.default_rng(0).integers(0, len(gen.classes), (2, 64, 64)).astype(np.uint8)
    got = gen.generate(labels, seed=4)
    torch.manual_seed(4)  # the same noise generate() draws
    x = one_hot(labels, len(gen.classes))
    z = torch.randn(x.shape[0], 1, *x.shape[2:])
    with torch.no_grad():
        want = gen.module(x, noise=z, style=torch.tensor([card["default_style"]])).clamp(-1, 1)
        zero_code = gen.module(x, noise=z).clamp(-1, 1)
    torch.testing.assert_close(got, want)
    assert (got - zero_code).abs().max() > 0.05
