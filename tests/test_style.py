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


def _stub_segmenter():
    """(module, card) of a 'segmenter' that reads red pixels as building, grey as road, the rest as background:
    labels the synthetic references below exactly, so the test checks the wiring, not a trained network."""
    import torch

    class Stub(torch.nn.Module):
        def forward(self, x):
            r, g, b = x[:, 0], x[:, 1], x[:, 2]
            chroma = x.amax(1) - x.amin(1)
            building = 40 * (r - g - 0.2)
            road = 40 * (0.3 - chroma)
            rest = torch.full_like(r, -20.0)
            return torch.stack([torch.zeros_like(r), building, rest, rest, road], 1)

    return Stub().eval(), {"classes": ["background", "building", "woodland", "water", "road"]}


def _red_roof_reference(path, rng):
    """A 256 px photo: green ground, red roofs, a grey road (each with noise); returns its class map."""
    ids = np.zeros((256, 256), np.uint8)
    for r0, c0 in ((20, 20), (20, 150), (150, 30), (160, 160)):
        ids[r0:r0 + 60, c0:c0 + 70] = 1
    ids[110:135, :] = 4
    colours = np.array([(70, 120, 50), (190, 60, 45), (125, 125, 125)], float)
    rgb = colours[np.array([0, 1, 0, 0, 2])[ids]] + rng.normal(0, 10, (256, 256, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return ids


def test_reference_colours_carry_over_to_a_render(tmp_path, style_model):
    """A reference whose roofs are red and ground green: applied to a rendered aerial.tif with its classes.tif,
    each class's mean colour moves at least 60 % of the way from the render's own look to the reference's
    (measured along the line between them), roofs included."""
    from geogan.classes import load_schema
    from geogan.colour_transfer import ColourTransfer
    from geogan.infer import load_model
    from geogan.style_reference import array_layouts, reference_colour_transfer

    rng = np.random.default_rng(7)
    ref = tmp_path / "red_roofs.png"
    ref_ids = _red_roof_reference(ref, rng)
    res = geogan.render(osm=sample_osm_path(), bbox=_bbox(), out_dir=tmp_path / "own", model=str(style_model),
                        tile_px=128, overlap_px=32, seed=1)
    aerial, classes = rasterio.open(res.aerial).read(), rasterio.open(res.classes).read(1)
    schema = load_schema()
    model = load_model(str(style_model), schema, "cpu")
    transfer = reference_colour_transfer(model, schema, ref, segmenter=_stub_segmenter(), area=array_layouts(classes))
    assert isinstance(transfer, ColourTransfer)
    styled = transfer(aerial, classes)
    ids = model.lut[classes]
    photo = np.moveaxis(np.asarray(Image.open(ref), dtype=float), -1, 0)
    for k in (0, 1, 4):  # background, building, road
        assert (ids == k).mean() > 0.02, k
        d, s = aerial[:, ids == k].mean(1), styled[:, ids == k].mean(1)
        r = photo[:, ref_ids == k].mean(1)
        fraction = (s - d) @ (r - d) / ((r - d) @ (r - d))
        assert fraction > 0.6, (k, fraction, d, s, r)


def test_reference_colours_refuse_a_missing_or_unreadable_photo(tmp_path, style_model):
    from geogan.classes import load_schema
    from geogan.infer import load_model
    from geogan.style_reference import reference_colour_transfer

    schema = load_schema()
    model = load_model(str(style_model), schema, "cpu")
    with pytest.raises(InputError, match="does not exist"):
        reference_colour_transfer(model, schema, tmp_path / "nope.png", segmenter=_stub_segmenter())
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        reference_colour_transfer(model, schema, bad, segmenter=_stub_segmenter())
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(tiny)
    with pytest.raises(InputError, match="40x10 px at the model's GSD; give a photo at least 16 px"):
        reference_colour_transfer(model, schema, tiny, segmenter=_stub_segmenter())


def test_calibration_layouts_hold_every_class_and_repeat():
    from geogan.style_reference import calibration_layouts

    classes = ["background", "building", "woodland", "water", "road", "snow"]
    a, b = calibration_layouts(classes), calibration_layouts(classes)
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == (4, 256, 256)
    shares = np.bincount(a.ravel(), minlength=len(classes)) / a.size
    assert (shares > 0.02).all(), shares


def test_area_layouts_spread_over_the_grid_and_mark_what_lies_inside():
    """Tiles of the render's own area (its look is measured there): spread to the grid's corners, the pixels
    past a small grid's edge marked outside; drawn by a class source or cut from an array alike."""
    from affine import Affine

    from geogan.grid import Grid
    from geogan.style_reference import area_layouts, array_layouts

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, (300, 700)).astype(np.uint8)
    maps, inside = array_layouts(ids, tile_px=128, n_tiles=8)
    assert maps.shape[1:] == (128, 128) and 4 <= len(maps) <= 8 and inside.all()
    assert np.array_equal(maps[0], ids[:128, :128]) and np.array_equal(maps[-1], ids[-128:, -128:])

    grid = Grid("EPSG:32633", Affine(0.5, 0, 500000, 0, -0.5, 6000000), ids.shape)

    class ArraySource:  # a class source drawing ``ids`` (background 0 outside)
        def classes(self, g):
            c0 = round((g.transform.c - grid.transform.c) / 0.5)
            r0 = round((grid.transform.f - g.transform.f) / 0.5)
            out = np.zeros(g.shape_yx, np.uint8)
            part = ids[max(r0, 0):r0 + g.height, max(c0, 0):c0 + g.width]
            out[:part.shape[0], :part.shape[1]] = part
            return out

    maps2, inside2 = area_layouts(ArraySource(), grid, tile_px=128, n_tiles=8)
    assert np.array_equal(maps, maps2) and np.array_equal(inside, inside2)
    small, small_inside = array_layouts(ids[:100, :90], tile_px=128, n_tiles=8)
    assert len(small) == 1 and small_inside.sum() == 100 * 90 and small_inside[0, :100, :90].all()


def test_segmenter_classes_stand_for_model_classes_by_name_or_schema():
    """The reference photo's classes come from a segmenter with its own class names: a model class takes the
    segmenter class of the same name, else one of the schema classes its card maps to it (the recife model's
    'ground' and 'vegetation'), else none (it follows the other classes' shift); never two at once."""
    from geogan.style_reference import segmenter_names

    seg = ["background", "building", "woodland", "water", "road"]
    card = {"classes": ["ground", "building", "road", "vegetation", "water", "beach"],
            "schema_to_model": {"background": "ground", "grass": "ground", "building": "building", "road": "road",
                                "woodland": "vegetation", "water": "water", "bare": "beach"}}
    assert segmenter_names(card, seg) == ["background", "building", "road", "woodland", "water", None]
    twice = {"classes": ["ground", "field"], "schema_to_model": {"background": "ground", "farmland": "field",
                                                                  "grass": "field"}}
    assert segmenter_names(twice, seg + ["grass"]) == ["background", "grass"]
    same = {"classes": ["background", "open"], "schema_to_model": {"background": "open"}}
    assert segmenter_names(same, seg) == ["background", None]


def test_style_colours_move_a_render_toward_the_reference(tmp_path, style_model):
    """``style_colours=True`` (``--style-colours``): the render's colours move toward a red reference photo's."""
    rng = np.random.default_rng(2)
    ref = tmp_path / "red.png"
    Image.fromarray(np.clip(np.array((200, 60, 50)) + rng.normal(0, 15, (256, 256, 3)), 0, 255)
                    .astype(np.uint8)).save(ref)
    kw = dict(osm=sample_osm_path(), bbox=_bbox(), tile_px=128, overlap_px=32, seed=1, model=str(style_model),
              style_ref=ref)
    plain = geogan.render(out_dir=tmp_path / "plain", **kw)
    coloured = geogan.render(out_dir=tmp_path / "coloured", style_colours=True, **kw)
    a = rasterio.open(plain.aerial).read().reshape(3, -1).mean(1)
    b = rasterio.open(coloured.aerial).read().reshape(3, -1).mean(1)
    assert (b[0] - b[1]) > (a[0] - a[1]) + 10  # redder
