"""Models at coarser native GSDs (a resolution pyramid), trained from the same pairs downsampled.

A render's generator runs at its model's native GSD (:mod:`geogan.anchor`), so a ``--gsd 10`` render with
the 0.5 m default model draws 400 model pixels per output pixel. A pyramid member drawn at 2 or 8 m costs
what its own pixels cost; :func:`geogan.zoo.pick_for_gsd` chooses it from the requested GSD.

A member is trained by the ordinary trainer (:func:`geogan.training.trainer.train_with`) on pairs written
by :func:`write_downsampled_pairs`:

* the photo: the mean of each ``factor`` x ``factor`` block (what the render's warper does to a finer
  picture on a coarser output grid, :mod:`geogan.warp`);
* the labels: the label pixel under each coarse pixel's centre: the rule the render's rasterizer draws
  class maps with at any GSD (a pixel takes the feature under its centre, :mod:`geogan.rasterizer`), so a
  member sees in training the class maps it is given when rendering (narrow roads come out broken, as they
  do when rasterized at that GSD);
* a label map TOML beside them: the source map with ``gsd_m`` multiplied by ``factor``, which the trainer
  writes into the model card.

File names (and so the validation split by number) are kept. The generator is the compact U-Net without a
position cue, with as many levels as the small tiles hold (:class:`PyramidLevel`); being fully
convolutional, it renders 256 px tiles like the other models.

    python -m geogan.training.pyramid prepare --pairs ../shared/data/landcoverai-pairs --factor 4 --out DIR
    python -m geogan.training.pyramid train --pairs DIR --factor 4 --out RUN --steps N
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .pairs import LabelMap

LABEL_MAP_FILE = "label_map.toml"


def box_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (H / factor, W / factor, C): the rounded mean of each block."""
    h, w, c = image.shape
    if h % factor or w % factor:
        raise InputError(f"a {w}x{h} pair does not divide into {factor} px blocks; choose a factor of {h}")
    blocks = image.reshape(h // factor, factor, w // factor, factor, c).astype(np.float64)
    return np.round(blocks.mean((1, 3))).astype(np.uint8)


def centre_sample(labels: np.ndarray, factor: int) -> np.ndarray:
    """(H, W[, C]) -> (H / factor, W / factor[, C]): the pixel under each block's centre (index
    ``factor // 2`` in the block), as a rasterizer at the coarse GSD would draw it."""
    return np.ascontiguousarray(labels[factor // 2::factor, factor // 2::factor])


def downsample_pair(pair_rgb: np.ndarray, factor: int) -> np.ndarray:
    """A side-by-side pair (image | labels) at ``factor`` times its pixel size: image block means, labels
    sampled at the block centres (label values kept exactly, so the same label map reads them)."""
    h, w, _ = pair_rgb.shape
    if w % 2:
        raise InputError(f"a pair is {w}x{h}; expected the image and the label map side by side")
    image, labels = pair_rgb[:, : w // 2], pair_rgb[:, w // 2:]
    return np.concatenate([box_mean(image, factor), centre_sample(labels, factor)], 1)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def label_map_toml(lm: LabelMap, factor: int, attribution: str = "", tolerance: float = 12.0,
                   max_unmatched: float = 0.05, teacher: str | None = None) -> str:
    """The TOML of ``lm`` for pairs ``factor`` times coarser (``gsd_m`` scaled, everything else kept;
    ``teacher``: the images are that model's pictures, said in ``data``)."""
    gsd_m = lm.gsd_m * factor
    photo = f"photo: {factor}x{factor} block means" if teacher is None else \
        f"picture: model '{Path(str(teacher)).stem}' drawing the labels at {lm.gsd_m:g} m, {factor}x{factor} block means"
    lines = [f"name = {_toml_string(f'{lm.name}_{gsd_m:g}m')}",
             f"classes = {json.dumps(list(lm.classes))}",
             f"gsd_m = {gsd_m!r}",
             f"tolerance = {tolerance!r}", f"max_unmatched = {max_unmatched!r}",
             f"data = {_toml_string(f'{lm.data} downsampled {factor}x to {gsd_m:g} m/px ({photo}; labels: the pixel under each block centre)')}",
             f"license = {_toml_string(lm.license)}",
             f"attribution = {_toml_string(attribution)}", "", "[values]"]
    lines += [f"{_toml_string(','.join(str(v) for v in key))} = {_toml_string(cls)}" for key, cls in lm.values.items()]
    lines += ["", "[schema_to_model]"] + [f"{k} = {_toml_string(v)}" for k, v in lm.schema_to_model.items()]
    return "\n".join(lines) + "\n"


class Teacher:
    """A model drawing pairs' labels as a render draws them (eval mode, its card's postprocess), each pair under
    the noise of ``seed`` and its number."""

    def __init__(self, model: str, lm: LabelMap, seed: int = 0) -> None:
        from ..evaluate import ModelGenerator
        self.gen, self.seed = ModelGenerator(model), seed
        missing = [c for c in lm.classes if c not in self.gen.classes]
        if missing:
            raise InputError(f"teacher '{model}' has no classes {missing}; give a model with the label map's classes")
        self.to_model = np.array([self.gen.classes.index(c) for c in lm.classes], dtype=np.uint8)

    def picture(self, ids: np.ndarray, number: int) -> np.ndarray:
        """uint8 (H, W, 3) of class ids (H, W) in the label map's order."""
        from ..evaluate import to_uint8_images
        fake = self.gen.generate(self.to_model[ids][None], seed=self.seed * 100_003 + number, batch=1)
        return to_uint8_images(fake)[0]


def write_downsampled_pairs(pairs_dir: Path, out_dir: Path, factor: int, label_map: str = "landcoverai",
                            teacher: str | None = None, seed: int = 0) -> Path:
    """Every pair of ``pairs_dir`` at ``factor`` times its pixel size into ``out_dir`` (same file names),
    with the label map TOML the trainer reads (``out_dir/label_map.toml``); returns that TOML's path.

    ``teacher``: a model (zoo name or path) whose picture of each pair's labels replaces the photo before
    it is averaged, so the member learns the look of the teacher's renders averaged to its GSD (what a
    render with the teacher at that GSD gives) instead of the averaged photo."""
    from .datasets import _label_tolerance, _resolve_label_map, list_pair_files, read_pair_checked

    if factor < 1:
        raise InputError(f"the downsampling factor must be 1 or more (got {factor})")
    lm, lm_path = _resolve_label_map(label_map)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .pairs import pair_number
    drawer = Teacher(teacher, lm, seed) if teacher is not None else None
    for f in list_pair_files(pairs_dir):
        with Image.open(f) as im:
            pair = np.asarray(im.convert("RGB"))
        if drawer is not None:
            _, ids = read_pair_checked(f, lm, float("inf"), 1.0)
            pair = np.concatenate([drawer.picture(ids, pair_number(f)), pair[:, pair.shape[1] // 2:]], 1)
        Image.fromarray(downsample_pair(pair, factor)).save(out_dir / f.name)
    from .trainer import _attribution
    tol, max_un = _label_tolerance(lm, lm_path)
    toml = out_dir / LABEL_MAP_FILE
    toml.write_text(label_map_toml(lm, factor, _attribution(lm_path), tol, max_un, teacher), encoding="utf-8")
    return toml


# ---------------------------------------------------------------- the networks for small tiles
@dataclass(frozen=True)
class PyramidLevel:
    """The networks of a member trained on ``tile_px`` px pairs: a U-Net of ``n_down`` levels (the innermost
    keeps ``tile_px / 2**n_down`` px: several pixels, so a 256 px render tile meets no new regime at the
    bottleneck) and a PatchGAN of ``d_layers`` stride-2 layers at ``num_d`` scales that fit the tile."""

    tile_px: int
    n_down: int
    d_layers: int
    num_d: int
    batch: int

    @classmethod
    def for_tile(cls, tile_px: int) -> "PyramidLevel":
        if tile_px < 16:
            raise InputError(f"pairs of {tile_px} px are too small for a pyramid member; use 16 px or more "
                             "(a smaller downsampling factor)")
        n_down = max(2, int(np.log2(tile_px)) - 2)  # innermost 4x4 px
        d_layers, num_d = (3, 2) if tile_px >= 64 else (2, 1)
        batch = min(64, max(8, 2 * (256 // tile_px) ** 2))  # about two 256 px tiles of pixels, at most 64 tiles
        return cls(tile_px, n_down, d_layers, num_d, batch)

    def g_params(self) -> dict:
        from ..models.unet import NO_POSITION_CUE
        return {**NO_POSITION_CUE, "n_down": self.n_down, "resize_levels": self.n_down}

    def d_params(self) -> dict:
        return {"n_layers": self.d_layers, "num_d": self.num_d}


def train_config(pairs_dir: Path, name: str, steps: int, *, threads: int = 1, checkpoint_every: int = 250,
                 tile_px: int | None = None, batch: int | None = None, l1_weight: float | None = None):
    """The :class:`~geogan.training.config.TrainConfig` of a member on downsampled pairs in ``pairs_dir``."""
    from .config import ArchConfig, DataConfig, LossConfig, OptimConfig, RuntimeConfig, ScheduleConfig, TrainConfig

    if tile_px is None:
        from .datasets import list_pair_files
        with Image.open(list_pair_files(pairs_dir)[0]) as im:
            tile_px = im.height
    level = PyramidLevel.for_tile(tile_px)
    return TrainConfig(
        data=DataConfig(str(pairs_dir), label_map=str(Path(pairs_dir) / LABEL_MAP_FILE)),
        schedule=ScheduleConfig(steps=steps, checkpoint_every=checkpoint_every, sample_every=checkpoint_every),
        arch=ArchConfig("unet", g_params=level.g_params(), d_params=level.d_params()),
        loss=LossConfig(l1_weight=l1_weight), optim=OptimConfig(batch=batch or level.batch, ratio="1:1"),
        runtime=RuntimeConfig(device="cpu", threads=threads), name=name)


def pyramid_card_fields(family: str, gsd_range_m: tuple[float, float | None], command: str) -> dict:
    """The card fields that make a model a pyramid member of ``family`` (read by :func:`geogan.zoo.pick_for_gsd`):
    the output GSDs it serves (``None``: no upper bound)."""
    return {"pyramid_of": family, "gsd_range_m": [gsd_range_m[0], gsd_range_m[1]],
            "pyramid_command": command}


def install_member(export_card: Path, dest_dir: Path, family: str, gsd_range_m: tuple[float, float | None],
                   command: str, extra: dict | None = None) -> Path:
    """Copy a trained member (an ``export/NAME.json`` + weights) into a zoo folder, its card marked as a
    pyramid member of ``family`` serving ``gsd_range_m`` (:func:`pyramid_card_fields`), with ``extra`` card
    fields (description, metrics ...) merged; the weights are copied unchanged. Returns the new card's path."""
    import shutil

    export_card = Path(export_card)
    card = json.loads(export_card.read_text(encoding="utf-8"))
    card.update(pyramid_card_fields(family, gsd_range_m, command))
    for key, value in (extra or {}).items():
        card[key] = {**card.get(key, {}), **value} if isinstance(value, dict) and key in card else value
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = dest_dir / str(card["name"])
    shutil.copyfile(export_card.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))
    stem.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return stem.with_suffix(".json")


def _main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m geogan.training.pyramid", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write pairs downsampled by --factor")
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--factor", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--label-map", default="landcoverai")
    p.add_argument("--teacher", help="a model whose pictures of the labels replace the photos (zoo name or path)")
    t = sub.add_parser("train", help="train a member on pairs written by prepare (resumes a run in --out)")
    t.add_argument("--pairs", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--batch", type=int, help="tiles per step (default: about two 256 px tiles of pixels)")
    t.add_argument("--init-from", type=Path, help="start from another run's networks (its folder)")
    t.add_argument("--l1-weight", type=float, help="L1 weight (default: the U-Net recipe's 30)")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        print(write_downsampled_pairs(args.pairs, args.out, args.factor, args.label_map, args.teacher))
        return
    from .trainer import train_with
    config = train_config(args.pairs, args.name, args.steps, threads=args.threads,
                          checkpoint_every=args.checkpoint_every, batch=args.batch, l1_weight=args.l1_weight)
    log, card = train_with(config, args.out, resume=True, init_from=args.init_from)
    print(f"step {log.step} ({log.seconds:.0f} s): {card}")


if __name__ == "__main__":
    import logging
    logging.basicConfig(level="INFO", stream=sys.stderr)
    _main()
