"""Does a render take on the per-class colours of a held-out reference photo? (issue 25, styles)

For held-out reference photos (LandCover.ai pairs >= 896, Recife pairs of the highest 12.5 %) the benchmark
renders two targets with the ``style`` model:

* ``pairs``: the label maps of 16 other held-out pairs (8 of each set), 256 px tiles through the generator;
* ``town``: a window of the sample town (``geogan.render``), aerial.tif with classes.tif.

each in the model's own look (card ``default_style``, no reference) and with the reference, by the methods

* ``code``: the reference's style code alone (GauGAN's style encoder; what ``render --style-ref`` did);
* ``colour``: own look + per-class colour transfer (:func:`geogan.style_reference.reference_colour_transfer`);
* ``code+colour``: the reference's code + the colour transfer (calibrated under that code);
* ``labels``: own look + the colour transfer with the reference read by its *true* labels instead of the
  segmenter (a diagnostic: the transfer's own shortfall, apart from the segmenter's misreading).

The method sees only the photo; the pair's labels give the reference's true per-class mean colours, for
scoring. Per class ``k`` present in both the reference (>= 2 % of its pixels) and the target (>= 0.5 %), with
mean RGB colours ``d`` (own look), ``s`` (styled) and ``r`` (the reference photo's, by its labels):

* ``fraction`` = (s - d) . (r - d) / |r - d|^2, pooled as sums over references, targets and classes with the
  target's pixel counts as weights: how far the render's class colours move from the own look toward the
  reference's (target >= 0.60);
* ``closed`` = 1 - sum |s - r| / sum |d - r| (the same weights): the share of the colour distance closed.

    .venv/bin/python benchmarks/style_transfer.py --json benchmarks/results/style_transfer_$(date +%F).json \
        --grid docs/style_transfer.jpg
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SETS = (("landcoverai", ROOT.parent / "shared/data/landcoverai-pairs", "landcoverai"),
        ("recife", ROOT.parent / "shared/data/recife-pairs", "recife_landcoverai"))
METHODS = ("code", "colour", "code+colour", "labels")
TARGET_FRACTION = 0.60  # issue 25: each class's mean colour moves at least this far toward the reference's
REF_MIN_SHARE, TARGET_MIN_SHARE = 0.02, 0.005
GAIN = (1.0, 1.0)  # --gain-max G sets (1 / G, G)
TOWN_HALF_DEG = (0.0025, 0.0012)  # half width / height of the sample-town window (about 550 x 530 px at 0.5 m)


def held_out(folder: Path, label_map: str, classes: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, photo uint8 (H, W, 3), model class ids (H, W)) of the held-out pairs of a set."""
    from geogan.training.datasets import list_pair_files, split_by_number
    from geogan.training.pairs import load_label_map, read_pair

    lm = load_label_map(label_map)
    to_model = np.array([classes.index(c) for c in lm.classes], np.uint8)
    _, val = split_by_number(list_pair_files(folder))
    out = []
    for path in val:
        photo, labels = read_pair(path, lm)
        out.append((path.stem, photo, to_model[labels]))
    return out


def showing(pairs, n: int, min_classes: int = 2):
    """``n`` pairs evenly spread among those with at least ``min_classes`` classes over REF_MIN_SHARE."""
    ok = [p for p in pairs if (np.bincount(p[2].ravel(), minlength=8) / p[2].size >= REF_MIN_SHARE).sum()
          >= min_classes and (p[2] == 3).mean() < 0.7]
    return [ok[i] for i in np.linspace(0, len(ok) - 1, min(n, len(ok))).round().astype(int)]


def class_means(rgb: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean RGB (n, 3), pixel counts (n,)) per class of an image (3, H, W) and class map (H, W)."""
    flat, c = rgb.reshape(3, -1).astype(np.float64), ids.ravel()
    counts = np.bincount(c, minlength=n)[:n].astype(np.float64)
    sums = np.stack([np.bincount(c, weights=flat[ch], minlength=n)[:n] for ch in range(3)], 1)
    return sums / np.maximum(counts, 1)[:, None], counts


class Score:
    """Pooled fraction / closed sums, overall and per class."""

    def __init__(self, classes: list[str]):
        self.classes = classes
        self.num, self.den = np.zeros(len(classes)), np.zeros(len(classes))
        self.dist_s, self.dist_d = np.zeros(len(classes)), np.zeros(len(classes))

    def add(self, d: np.ndarray, s: np.ndarray, r: np.ndarray, weight: np.ndarray, ok: np.ndarray) -> None:
        w = np.where(ok, weight, 0.0)
        self.num += w * ((s - d) * (r - d)).sum(1)
        self.den += w * ((r - d) ** 2).sum(1)
        self.dist_s += w * np.linalg.norm(s - r, axis=1)
        self.dist_d += w * np.linalg.norm(d - r, axis=1)

    def result(self) -> dict:
        frac = lambda a, b: None if b <= 0 else round(float(a / b), 3)  # noqa: E731
        closed = lambda s, d: None if d <= 0 else round(1 - float(s / d), 3)  # noqa: E731
        return {"fraction": frac(self.num.sum(), self.den.sum()),
                "closed": closed(self.dist_s.sum(), self.dist_d.sum()),
                "per_class": {c: {"fraction": frac(self.num[k], self.den[k]),
                                  "closed": closed(self.dist_s[k], self.dist_d[k])}
                              for k, c in enumerate(self.classes)}}


def render_tiles(model, schema_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 (B, 3, 256, 256) renders of model class maps (B, 256, 256), fixed noise."""
    from geogan.infer import run_batch
    from geogan.noise import noise_window

    out = []
    for i in range(0, len(labels), 8):
        lab = labels[i:i + 8]
        noise = np.stack([noise_window(1, 0, 256 * (i + j), 256, 256) for j in range(len(lab))])[:, None]
        out.append(run_batch(model, schema_ids[lab].astype(np.uint8), noise, 256))
    return np.clip(np.rint((np.concatenate(out)[:, :3] + 1) * 127.5), 0, 255).astype(np.uint8)


def render_town(model, out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(aerial uint8 (3, H, W), schema class ids (H, W)) of the sample-town window with ``model`` as loaded."""
    import rasterio

    import geogan
    from geogan.api import sample_osm_path
    from geogan.sources import osm_file_bounds

    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bbox = (cx - TOWN_HALF_DEG[0], cy - TOWN_HALF_DEG[1], cx + TOWN_HALF_DEG[0], cy + TOWN_HALF_DEG[1])
    res = geogan.render(osm=sample_osm_path(), bbox=bbox, out_dir=out_dir, model="style", gsd_m=0.5, seed=3,
                        overwrite=True, _preloaded=model)
    with rasterio.open(res.aerial) as a, rasterio.open(res.classes) as c:
        return a.read(), c.read(1)


_OWN_PROCEDURAL: dict = {}  # the own look's procedural-town colours, per model object (the base model only)


def own_source(model, schema, area, cache: bool):
    """The own-look colours ``geogan.style_reference.colour_transfer_for`` starts from (the procedural town's
    measured once per model when ``cache``)."""
    from geogan.style_reference import merged, model_colours, procedural_layouts

    proc = _OWN_PROCEDURAL.get(id(model)) if cache else None
    if proc is None:
        proc = model_colours(model, procedural_layouts(model, schema))
        if cache:
            _OWN_PROCEDURAL[id(model)] = proc
    return proc if area is None else merged(model_colours(model, *area), proc)


def transfers(models: dict, schema, ref: "Ref", area, calibration: str) -> dict:
    """{method: colour transfer or None} for one reference and one target's layouts ``area`` (as
    ``colour_transfer_for`` makes them; the own look measured once for ``colour`` and ``labels``)."""
    from geogan.colour_transfer import transfer_between

    area = area if calibration == "area" else None
    lut = models["colour"].lut
    own = own_source(models["colour"], schema, area, cache=True)
    coded = own_source(models["code+colour"], schema, area, cache=False)
    return {"code": None, "colour": transfer_between(own, ref.reference, lut, gain_range=GAIN),
            "code+colour": transfer_between(coded, ref.reference, lut, gain_range=GAIN),
            "labels": transfer_between(own, ref.truth, lut, gain_range=GAIN)}


@dataclass(frozen=True, eq=False)
class Ref:
    """One reference photo: its name and set, its per-class colours as the method reads them (``reference``),
    its true per-class mean RGB ``r`` and which classes it shows (``in_ref``), its texture energy; ``truth``: its
    per-class colours read by its labels (the ``labels`` method)."""

    set_name: str
    name: str
    reference: object
    truth: object
    r: np.ndarray
    in_ref: np.ndarray
    texture: float


def laplacian_energy(rgb: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of an image's grey levels (3, H, W): its fine detail."""
    g = rgb.astype(np.float32).mean(0)
    return float(np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]).mean())


def score_town(model, models, schema, ref: Ref, town, tmp: Path, args, scores) -> dict:
    """Score every method on the sample-town window; returns {method: (this reference's Score result, styled
    aerial)}."""
    from geogan.style_reference import array_layouts

    d_rgb, town_c, d, w = town
    out = {}
    coded_rgb = render_town(models["code"], tmp / "styled")[0]
    for method, transfer in transfers(models, schema, ref, array_layouts(town_c), args.calibration).items():
        rgb = coded_rgb if models[method] is not model else d_rgb
        if transfer is not None:
            rgb = transfer(rgb, town_c)
        s, _ = class_means(rgb, model.lut[town_c], len(d))
        ok = ref.in_ref & (w / w.sum() >= TARGET_MIN_SHARE)
        for sc in scores(method):
            sc.add(d, s, ref.r, w, ok)
        single = Score(list(model.card["classes"]))
        single.add(d, s, ref.r, w, ok)
        out[method] = (single.result(), rgb)
    return out


def score_pairs(model, models, schema, ids, ref: Ref, pool, pool_d, args, scores, texture: dict) -> None:
    """Score every method on the held-out label maps of ``pool`` (the reference's own left out); append the
    texture ratios (render over reference photo) to ``texture[method]`` (and ``texture["own"]``)."""
    for pname, _, plabels in pool:
        if pname == ref.name:
            continue
        schema_map = ids[plabels].astype(np.uint8)
        area = (schema_map[None], np.ones((1, *schema_map.shape), bool))
        coded = render_tiles(models["code"], ids, plabels[None])[0]
        d_rgb, d, w = pool_d[pname]
        texture["own"].append(laplacian_energy(d_rgb) / ref.texture)
        for method, transfer in transfers(models, schema, ref, area, args.calibration).items():
            rgb = coded if models[method] is not model else d_rgb
            if transfer is not None:
                rgb = transfer(rgb, schema_map)
            s, _ = class_means(rgb, plabels, len(d))
            ok = ref.in_ref & (w / w.sum() >= TARGET_MIN_SHARE)
            for sc in scores(method):
                sc.add(d, s, ref.r, w, ok)
            texture[method].append(laplacian_energy(rgb) / ref.texture)


def own_look(model, ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(render, per-class mean RGB, pixel counts) of one label map in the model's own look."""
    rgb = render_tiles(model, ids, labels[None])[0]
    return (rgb, *class_means(rgb, labels, len(model.card["classes"])))


def segmenter_card(name: str, card: dict) -> dict:
    """What identifies the segmenter the references were read with: weights hash, steps, metrics."""
    from geogan.zoo import resolve_model

    weights = resolve_model(name).with_suffix(".safetensors")
    return {"weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "steps": card.get("training", {}).get("steps"), "metrics": card.get("metrics")}


def run(args) -> dict:
    import tempfile

    from PIL import Image

    from geogan.classes import load_schema
    from geogan.colour_transfer import class_colours, one_hot_weights
    from geogan.infer import encode_style, load_model
    from geogan.style_reference import _schema_ids_for, load_style_segmenter, read_style_reference

    torch.set_num_threads(args.threads)
    schema = load_schema()
    model = load_model("style", schema, "cpu")
    classes = list(model.card["classes"])
    n = len(classes)
    ids = _schema_ids_for(model, classes, schema)
    segmenter = load_style_segmenter(args.segmenter)
    sets = {name: held_out(folder, lm, classes) for name, folder, lm in SETS}
    refs = [(name, p) for name, pairs in sets.items() for p in showing(pairs, args.refs_per_set)]
    if args.refs:
        refs = [(s, p) for s, p in refs if f"{s}/{p[0]}" in args.refs]
    pool = [p for pairs in sets.values() for p in showing(pairs, 8, min_classes=3)]
    scores = {(t, m): Score(classes) for t in ("pairs", "town") for m in METHODS}
    by_set = {(s, t, m): Score(classes) for s in sets for t in ("pairs", "town") for m in METHODS}
    grid_rows, per_ref, per_ref_pairs, per_ref_town = [], [], [], []
    texture = {m: [] for m in ("own", *METHODS)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        town_rgb, town_c = render_town(model, tmp / "default")
        town = (town_rgb, town_c, *class_means(town_rgb, model.lut[town_c], n))
        pool_d = {name: own_look(model, ids, labels) for name, _, labels in pool}
        for set_name, (name, photo, labels) in refs:
            t0 = time.perf_counter()
            photo_path = tmp / f"{set_name}_{name}.png"
            Image.fromarray(photo).save(photo_path)
            r, r_counts = class_means(np.moveaxis(photo, -1, 0), labels, n)
            truth = class_colours(np.ascontiguousarray(np.moveaxis(photo, -1, 0)), one_hot_weights(labels, n))
            ref = Ref(set_name, name, read_style_reference(model, photo_path, segmenter), truth, r,
                      r_counts / r_counts.sum() >= REF_MIN_SHARE, laplacian_energy(np.moveaxis(photo, -1, 0)))
            models = {"code": replace(model, style=encode_style(model, photo_path)), "colour": model, "labels": model}
            models["code+colour"] = models["code"]
            town_res = score_town(model, models, schema, ref, town, tmp, args,
                                  lambda m: (scores["town", m], by_set[set_name, "town", m]))
            own = {m: Score(classes) for m in METHODS}
            score_pairs(model, models, schema, ids, ref, pool, pool_d, args,
                        lambda m: (scores["pairs", m], by_set[set_name, "pairs", m], own[m]), texture)
            per_ref.append({"set": set_name, "pair": name, **{m: town_res[m][0]["fraction"] for m in METHODS}})
            per_ref_pairs.append({"set": set_name, "pair": name, **{m: own[m].result() for m in METHODS}})
            per_ref_town.append({"set": set_name, "pair": name, **{m: town_res[m][0] for m in METHODS}})
            grid_rows.append((photo, town_res[args.grid_method][1]))
            print(f"{set_name:11s} {name}  town fraction " + "  ".join(f"{m} {per_ref[-1][m]}" for m in METHODS),
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.grid is not None:
        write_grid(args.grid, town_rgb, [grid_rows[i] for i in args.grid_refs] if args.grid_refs else
                   grid_rows[::max(1, len(grid_rows) // args.grid_rows)][:args.grid_rows])
    return {"date": date.today().isoformat(), "host": platform.node(), "model": "style",
            "segmenter": args.segmenter, "segmenter_card": segmenter_card(args.segmenter, segmenter[1]),
            "calibration": args.calibration, "gain_range": GAIN, "refs_per_set": args.refs_per_set,
            "references": [f"{s}/{p[0]}" for s, p in refs],
            "targets": {"pairs": f"{len(pool)} held-out label maps ({', '.join(p[0] for p in pool)}), "
                                 "the reference's own left out",
                        "town": f"sample town window +-{TOWN_HALF_DEG} deg around its centre, gsd 0.5 m, seed 3"},
            "results": {f"{t}/{m}": sc.result() for (t, m), sc in scores.items()},
            "by_reference_set": {f"{s}/{t}/{m}": sc.result() for (s, t, m), sc in by_set.items()},
            "median_over_references": {**median_over_references(per_ref_pairs, "pairs", classes),
                                       **median_over_references(per_ref_town, "town", classes)},
            "per_reference_town_fraction": per_ref,
            "per_reference_pairs": per_ref_pairs,
            "per_reference_town": per_ref_town,
            "texture_ratio_pairs": {m: round(float(np.mean(v)), 3) for m, v in texture.items()},
            "command": "benchmarks/style_transfer.py " + " ".join(sys.argv[1:])}


def median_over_references(records: list[dict], target: str, classes: list[str]) -> dict:
    """{target/method: {class: {median, references}}}: per class, the median over the references showing it of
    each reference's own fraction (pooled over its targets). Every reference counts once, whatever its colour
    distance; the pooled sums weigh a reference by its squared distance from the own look, so one reference
    whose labelled class looks unlike the class (Recife pair_1810: breaking surf labelled sea) can decide them."""
    out = {}
    for m in METHODS:
        per_class = {}
        for c in classes:
            vals = [r[m]["per_class"][c]["fraction"] for r in records if r[m]["per_class"][c]["fraction"] is not None]
            per_class[c] = {"median": round(float(np.median(vals)), 3) if vals else None, "references": len(vals)}
        out[f"{target}/{m}"] = per_class
    return out


def write_grid(path: Path, default: np.ndarray, rows: list[tuple[np.ndarray, np.ndarray]], crop_px: int = 256,
               show_px: int = 200) -> None:
    """A JPEG: per row, the own look | the reference photo | the styled render (the centre ``crop_px`` of the
    town, each panel shown at ``show_px``)."""
    from PIL import Image

    y0, x0 = (default.shape[1] - crop_px) // 2, (default.shape[2] - crop_px) // 2
    show = lambda a: np.asarray(Image.fromarray(a).resize((show_px, show_px), Image.LANCZOS))  # noqa: E731
    cut = lambda a: show(np.ascontiguousarray(np.moveaxis(a[:, y0:y0 + crop_px, x0:x0 + crop_px], 0, -1)))  # noqa: E731
    gap = np.full((show_px, 4, 3), 255, np.uint8)
    lines = [np.concatenate([cut(default), gap, show(photo), gap, cut(styled)], 1) for photo, styled in rows]
    sep = np.full((4, lines[0].shape[1], 3), 255, np.uint8)
    img = np.concatenate([x for line in lines for x in (line, sep)][:-1], 0)
    Image.fromarray(img).save(path, quality=82)


def per_class_report(res: dict) -> str:
    """A table: per target / method (overall and by reference set), the pooled fraction and each class's, with
    ``<`` marking a class under TARGET_FRACTION (``-``: no class pixels in both reference and target)."""
    rows = [("all", k, r) for k, r in res["results"].items()]
    rows += [(k.split("/")[0], "/".join(k.split("/")[1:]), r) for k, r in res["by_reference_set"].items()]
    classes = list(rows[0][2]["per_class"])
    cell = lambda v: "      -" if v is None else f"{v:6.2f}" + ("<" if v < TARGET_FRACTION else " ")  # noqa: E731
    lines = [f"fraction of the way from the own look to the reference (target >= {TARGET_FRACTION}; < marks a "
             "shortfall)", f"{'references':12s} {'target/method':18s} {'pooled':>7s} " +
             " ".join(f"{c[:7]:>7s}" for c in classes)]
    for set_name, key, r in rows:
        lines.append(f"{set_name:12s} {key:18s} {cell(r['fraction'])} " +
                     " ".join(cell(r["per_class"][c]["fraction"]) for c in classes))
    lines.append("median over references (each reference's fraction, pooled over its targets)")
    for key, r in res["median_over_references"].items():
        lines.append(f"{'all':12s} {key:18s} {'':7s} " + " ".join(cell(r[c]["median"]) for c in classes))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs-per-set", type=int, default=12)
    ap.add_argument("--segmenter", default=None, help="zoo name or stem of the segmenter that reads the references "
                    "(default: geogan.style_reference.STYLE_SEGMENTER, as render --style-ref)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refs", nargs="*", help="score only these references (SET/pair_NNNN, as listed in the JSON's "
                    "'references'): a diagnostic, not the benchmark")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--grid", type=Path, help="a JPEG: own look | reference | styled, for some references")
    ap.add_argument("--grid-method", default="colour", choices=METHODS)
    ap.add_argument("--grid-rows", type=int, default=4)
    ap.add_argument("--grid-refs", type=int, nargs="*", help="which references (indices) the grid shows")
    ap.add_argument("--calibration", default="area", choices=("area", "procedural"),
                    help="the own look measured on the target's layouts (as render does) or the procedural town only")
    ap.add_argument("--gain-max", type=float, default=1.0, help="largest scaling of a class's colour spread "
                    "(default 1: means only, as geogan.style_reference.GAIN_RANGE)")
    args = ap.parse_args()
    if args.segmenter is None:
        from geogan.style_reference import STYLE_SEGMENTER
        args.segmenter = STYLE_SEGMENTER
    global GAIN
    GAIN = (1 / args.gain_max, args.gain_max)
    res = run(args)
    print(per_class_report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
