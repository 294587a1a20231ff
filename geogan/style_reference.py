"""The colours of a reference photo, per land-cover class, carried onto a render (``render --style-ref``).

Two values, each computed once per render:

* :func:`read_style_reference`: the reference photo's per-class colour statistics. The photo is read at the
  model's GSD (as the style encoder reads it) and labelled by a segmenter trained on the real photos of both
  looks the ``style`` model knows, LandCover.ai and Recife (zoo name :data:`STYLE_SEGMENTER`, loaded by name;
  not the FCN-score judge ``segmenter_landcoverai``, which misread Recife's water and roads); each pixel
  weighs its class probability.
* :func:`colour_transfer_for`: the frozen :class:`~geogan.colour_transfer.ColourTransfer` from the model's own
  look (with the style code it renders with) to those colours. The own look is measured by rendering a few
  tiles of the render's own area (:func:`area_layouts`): the generator paints a class differently in
  different surroundings (a town's roads 5-8 L* lighter than :func:`calibration_layouts`' grid streets), and
  the area's tiles put its per-class means within 1-3 L*a*b* units of the whole render's; classes the area
  lacks are measured on :func:`calibration_layouts`, a small procedural town.

The transfer is then applied to every aerial strip as ``transfer(rgb_u8 (3, H, W), class_ids)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .colour_transfer import ClassColours, ColourTransfer, class_colours, one_hot_weights, transfer_between
from .errors import InputError, ModelError
from .infer import LoadedModel, run_batch

__all__ = ["STYLE_SEGMENTER", "area_layouts", "array_layouts", "calibration_layouts", "colour_transfer_for",
           "model_colours", "read_style_reference", "reference_colour_transfer", "reference_colours",
           "segmenter_names"]

STYLE_SEGMENTER = "segmenter_styles"  # the segmenter (zoo name) that labels reference photos
SEGMENT_CROP_PX = 256  # reference crops the segmenter sees (its training crops are of this scale)
MAX_SEGMENT_CROPS = 16
PROB_POWER = 1.0  # class weight = probability ** power; on LandCover.ai pairs 832..895 and Recife pairs 1000..1599
# the least biased of argmax, p, p^2, p^4 (p^2: roads 7-11 L* too light, the confident centre of the road)
CALIBRATION_TILES = 4
CALIBRATION_PX = 256
CALIBRATION_SEED = 0
AREA_TILES = 8  # tiles of the render's own area its look is measured on
GAIN_RANGE = (1.0, 1.0)  # how far a class's colour spread may be scaled toward the reference's: not at all; on
# held-out references (benchmarks/style_transfer.py) scaling it (0.5..2 or 0.8..1.25) moved the class means less
# (0.68 / 0.70 vs 0.71 of the way) and sharpened the render's fine detail (Laplacian 2.8x / 2.2x the photo's vs 1.9x)
MIN_CALIBRATION_PX = 2000  # pixels of a class the area must show to measure it there (else the procedural town)


def _read_reference(path: Path, gsd_m: float) -> np.ndarray:
    """uint8 (3, H, W) pixels of the reference at ``gsd_m`` (see :func:`geogan.infer._reference_pixels`)."""
    from .infer import _reference_pixels

    if not path.is_file():
        raise InputError(f"style reference '{path}' does not exist; give an aerial image (GeoTIFF or PNG)")
    try:
        arr = _reference_pixels(path, gsd_m)
    except Exception:
        raise InputError(f"style reference '{path}' is not a readable image; give a GeoTIFF or PNG") from None
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _crops(rgb_u8: np.ndarray, crop_px: int, max_crops: int) -> list[np.ndarray]:
    """Up to ``max_crops`` evenly spread ``crop_px`` crops; a smaller image whole (cut to a multiple of 16)."""
    h, w = rgb_u8.shape[1:]
    if h < crop_px or w < crop_px:
        h16, w16 = max(16, h // 16 * 16), max(16, w // 16 * 16)
        if h < 16 or w < 16:
            raise InputError(f"style reference is {w}x{h} px at the model's GSD; give a photo at least 16 px "
                             "on each side (a few hundred px show its look far better)")
        return [rgb_u8[:, :h16, :w16]]
    side = int(max_crops ** 0.5)
    ys = np.linspace(0, h - crop_px, min(side, h // crop_px)).round().astype(int)
    xs = np.linspace(0, w - crop_px, min(side, w // crop_px)).round().astype(int)
    return [rgb_u8[:, y:y + crop_px, x:x + crop_px] for y in ys for x in xs]


def load_style_segmenter(name: str = STYLE_SEGMENTER):
    """(segmenter module, its card) by zoo name or path."""
    from .models.segmenter import load_segmenter
    from .zoo import resolve_model

    return load_segmenter(resolve_model(name).with_suffix(""))


def reference_colours(rgb_u8: np.ndarray, classes: list[str | None], segmenter=None) -> ClassColours:
    """Per-class colour statistics of a reference photo (uint8 (3, H, W)), one per entry of ``classes``: the
    segmenter class standing for each model class (:func:`segmenter_names`; None or a name the segmenter does
    not know: share 0, the class follows the others' shift). Each pixel weighs ``p ** PROB_POWER`` for each
    class by the segmenter's probability ``p``."""
    net, card = segmenter if segmenter is not None else load_style_segmenter()
    seg_classes = list(card["classes"])
    crops = _crops(rgb_u8, SEGMENT_CROP_PX, MAX_SEGMENT_CROPS)
    weights, pixels = [], []
    with torch.inference_mode():
        for crop in crops:
            x = torch.from_numpy(np.ascontiguousarray(crop))[None].float() / 127.5 - 1
            prob = net(x).softmax(1)[0].numpy() ** PROB_POWER
            w = np.zeros((len(classes), *crop.shape[1:]), np.float32)
            for k, name in enumerate(classes):
                if name in seg_classes:
                    w[k] = prob[seg_classes.index(name)]
            weights.append(w)
            pixels.append(crop)
    return class_colours(np.concatenate(pixels, 2), np.concatenate(weights, 2))


def segmenter_names(card: dict, seg_classes: list[str]) -> list[str | None]:
    """For each class of a model card, the segmenter class that stands for it: the same name, else the first
    schema class in the card's ``schema_to_model`` that maps to it and the segmenter knows (e.g. the recife
    model's 'vegetation' <- schema 'woodland'), else None. A segmenter class stands for one model class only."""
    out: list[str | None] = []
    for name in card["classes"]:
        if name in seg_classes:
            out.append(name)
            continue
        mapped = [s for s, m in card.get("schema_to_model", {}).items() if m == name and s in seg_classes]
        out.append(mapped[0] if mapped else None)
    taken: set[str] = set()
    for k, name in enumerate(out):  # a segmenter class taken twice stands only for its first model class
        if name in taken:
            out[k] = None
        elif name is not None:
            taken.add(name)
    return out


def _smooth_field(rng: np.random.Generator, n: int, size_px: int, cells: int) -> np.ndarray:
    """(n, size, size) smooth random fields: bicubic upsampling of a ``cells`` x ``cells`` random grid."""
    coarse = torch.from_numpy(rng.standard_normal((n, 1, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=(size_px, size_px), mode="bicubic", align_corners=True)[:, 0].numpy()


def calibration_layouts(classes: list[str], n_tiles: int = CALIBRATION_TILES, size_px: int = CALIBRATION_PX,
                        seed: int = CALIBRATION_SEED) -> np.ndarray:
    """uint8 (n_tiles, size, size) model class indices of a small procedural town at 0.5 m/px: ``background``
    ground, ``woodland`` and ``water`` areas, a street grid of ``road`` (10-14 px wide) and ``building``
    rectangles (14-40 px) along the streets; any other class as blobs. Deterministic."""
    rng = np.random.default_rng(seed)
    idx = {name: k for k, name in enumerate(classes)}
    out = np.full((n_tiles, size_px, size_px), idx.get("background", 0), np.uint8)
    fields = _smooth_field(rng, n_tiles * (2 + len(classes)), size_px, 5).reshape(n_tiles, -1, size_px, size_px)
    others = [k for name, k in idx.items() if name not in ("background", "woodland", "water", "road", "building")]
    for t in range(n_tiles):
        for j, (name, q) in enumerate((("woodland", 0.8), ("water", 0.92))):
            if name in idx:
                out[t][fields[t, j] > np.quantile(fields[t, j], q)] = idx[name]
        for j, k in enumerate(others):
            out[t][fields[t, 2 + j] > np.quantile(fields[t, 2 + j], 0.9)] = k
        if "road" in idx or "building" in idx:
            _streets_and_houses(out[t], rng, idx)
    return out


def _streets_and_houses(tile: np.ndarray, rng: np.random.Generator, idx: dict[str, int]) -> None:
    """Draw a street grid and houses along it into ``tile`` (in place)."""
    size = tile.shape[0]
    spacing = int(rng.integers(90, 130))
    lines = [(int(p), int(rng.integers(10, 15))) for p in np.arange(rng.integers(10, 50), size, spacing)]
    if "building" in idx:
        for p, width in lines:
            for axis in (0, 1):
                for along in range(int(rng.integers(0, 20)), size - 14, int(rng.integers(34, 50))):
                    h, w = (int(v) for v in rng.integers(14, 41, 2))
                    across = p + width + int(rng.integers(3, 8))
                    r0, c0 = (across, along) if axis == 0 else (along, across)
                    tile[r0:r0 + h, c0:c0 + w] = idx["building"]
    if "road" in idx:
        for p, width in lines:
            tile[p:p + width, :] = idx["road"]
            tile[:, p:p + width] = idx["road"]


def _schema_ids_for(model: LoadedModel, classes: list[str], schema) -> np.ndarray:
    """(n_classes,) a schema id standing for each model class (the same name first; -1 for none)."""
    ids = np.full(len(classes), -1, np.int64)
    for k, name in enumerate(classes):
        mapped = [c.id for c in schema.classes if model.lut[c.id] == k]
        same = [c.id for c in schema.classes if c.name == name and model.lut[c.id] == k]
        if same or mapped:
            ids[k] = (same or mapped)[0]
    return ids


def procedural_layouts(model: LoadedModel, schema) -> np.ndarray:
    """uint8 (n, px, px) schema ids of :func:`calibration_layouts` for ``model`` (a model class no schema class
    maps to is drawn as the first class that has one)."""
    classes = list(model.card["classes"])
    layouts = calibration_layouts(classes)
    ids = _schema_ids_for(model, classes, schema)
    usable = ids >= 0
    fallback = int(ids[usable][0]) if usable.any() else 0
    return np.where(usable[layouts], ids[layouts], fallback).astype(np.uint8)


def _tile_origins(height_px: int, width_px: int, tile_px: int, n_tiles: int) -> list[tuple[int, int]]:
    """Up to ``n_tiles`` tile origins spread evenly over a ``height_px`` x ``width_px`` grid (row-major)."""
    rows = max(1, min(-(-height_px // tile_px), round((n_tiles * height_px / max(width_px, 1)) ** 0.5) or 1))
    cols = max(1, min(-(-width_px // tile_px), n_tiles // rows))
    ys = np.linspace(0, max(0, height_px - tile_px), rows).round().astype(int)
    xs = np.linspace(0, max(0, width_px - tile_px), cols).round().astype(int)
    return [(int(y), int(x)) for y in ys for x in xs]


def area_layouts(feats, grid, tile_px: int = CALIBRATION_PX, n_tiles: int = AREA_TILES
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, px, px) schema ids, bool (n, px, px) inside the grid) of up to ``n_tiles`` tiles spread
    evenly over ``grid``, drawn by the class source ``feats`` (e.g. the render's canonical grid and its
    generator class source): the layouts the model's own look is measured on."""
    origins = _tile_origins(grid.height, grid.width, tile_px, n_tiles)
    maps = np.stack([feats.classes(grid.window(y, x, tile_px, tile_px)) for y, x in origins]).astype(np.uint8)
    return maps, _inside(origins, grid.height, grid.width, tile_px)


def array_layouts(class_ids: np.ndarray, tile_px: int = CALIBRATION_PX, n_tiles: int = AREA_TILES
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`area_layouts` of a class map in memory (uint8 schema ids (H, W); tiles past its edge padded)."""
    h, w = class_ids.shape
    origins = _tile_origins(h, w, tile_px, n_tiles)
    padded = np.pad(class_ids, ((0, max(0, tile_px - h)), (0, max(0, tile_px - w))), mode="edge")
    maps = np.stack([padded[y:y + tile_px, x:x + tile_px] for y, x in origins]).astype(np.uint8)
    return maps, _inside(origins, h, w, tile_px)


def _inside(origins: list[tuple[int, int]], height_px: int, width_px: int, tile_px: int) -> np.ndarray:
    rr, cc = np.mgrid[:tile_px, :tile_px]
    return np.stack([(rr + y < height_px) & (cc + x < width_px) for y, x in origins])


def model_colours(model: LoadedModel, layouts: np.ndarray, inside: np.ndarray | None = None) -> ClassColours:
    """Per-class colour statistics of the model's own look (its current style code) on ``layouts`` (uint8
    schema ids (n, px, px); ``inside``: the pixels that count), each tile turned as a render turns it."""
    from .noise import noise_window, orient, tile_orientation
    from .pipeline import turns_tiles

    n, px = layouts.shape[0], layouts.shape[1]
    noise = noise_window(CALIBRATION_SEED, 0, 0, px, n * px).reshape(px, n, px).transpose(1, 0, 2)
    ks = [tile_orientation(CALIBRATION_SEED, 0, i * px) if turns_tiles(model) else 0 for i in range(n)]
    maps = np.stack([orient(m, k) for m, k in zip(layouts, ks)])
    z = np.stack([orient(z, k) for z, k in zip(noise, ks)])[:, None].astype(np.float32)
    out = run_batch(model, np.ascontiguousarray(maps), np.ascontiguousarray(z), px, orientations=ks)
    rgb = np.clip(np.rint((out[:, :3] + 1) * 127.5), 0, 255).astype(np.uint8)  # (n, 3, px, px), turned back
    weights = one_hot_weights(np.concatenate(list(model.lut[layouts]), 1), int(model.n_classes))
    if inside is not None:
        weights *= np.concatenate(list(inside), 1)[None]
    return class_colours(np.concatenate(list(rgb), 2), weights, min_weight=MIN_CALIBRATION_PX)


def merged(first: ClassColours, fallback: ClassColours) -> ClassColours:
    """``first``'s statistics for the classes it saw, ``fallback``'s for the others."""
    seen = first.share > 0
    pick = lambda a, b: np.where(seen[:, None], a, b)  # noqa: E731
    return ClassColours(pick(first.mean_lab, fallback.mean_lab), pick(first.std_lab, fallback.std_lab),
                        np.where(seen, first.share, 0).astype(np.float32))


def read_style_reference(model: LoadedModel, reference: str | Path, segmenter=None) -> ClassColours:
    """The per-class colours of the ``reference`` photo for ``model``'s classes (read at its GSD and labelled by
    ``segmenter``: (module, card), default the zoo's :data:`STYLE_SEGMENTER`). Computed once per render."""
    if "rgb" not in (model.card.get("outputs") or ["rgb"]):
        raise ModelError(f"model '{model.name}' makes no RGB image, so --style-ref cannot set its colours")
    rgb = _read_reference(Path(reference), model.gsd_m)
    segmenter = segmenter if segmenter is not None else load_style_segmenter()
    return reference_colours(rgb, segmenter_names(model.card, list(segmenter[1]["classes"])), segmenter)


def colour_transfer_for(model: LoadedModel, schema, reference: ClassColours,
                        area: tuple[np.ndarray, np.ndarray] | None = None, strength: float = 1.0,
                        gain_range: tuple[float, float] = GAIN_RANGE) -> ColourTransfer:
    """The :class:`ColourTransfer` from ``model``'s own look (with its current style code) to ``reference``'s
    colours, keyed by ``schema`` class id. The own look is measured on ``area`` (:func:`area_layouts` of the
    render's grid: the generator's colours depend on the layout around them) where it shows a class over
    ``MIN_CALIBRATION_PX`` pixels, else on :func:`calibration_layouts`. Compute it once per render."""
    source = model_colours(model, procedural_layouts(model, schema))
    if area is not None:
        source = merged(model_colours(model, *area), source)
    return transfer_between(source, reference, model.lut, strength=strength, gain_range=gain_range)


def reference_colour_transfer(model: LoadedModel, schema, reference: str | Path, segmenter=None,
                              area: tuple[np.ndarray, np.ndarray] | None = None) -> ColourTransfer:
    """:func:`read_style_reference` then :func:`colour_transfer_for`."""
    return colour_transfer_for(model, schema, read_style_reference(model, reference, segmenter), area)
