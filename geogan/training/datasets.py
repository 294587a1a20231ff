"""PyTorch datasets over the training data: side-by-side pairs and georeferenced chips.

Both keep every tile in memory as uint8 (the 1024 LandCover.ai pairs take about 270 MB) and reuse the
augmentation of :class:`geogan.training.pairs.PairSet` (the trainer's own path), so a
:class:`PairsDataset` item is exactly what the trainer sees:

- ``labels``: float one-hot ``[C, H, W]`` over the label map's model classes;
- ``image``: float ``[3, H, W]`` in [-1, 1];
- (chips with heights) ``height``: float ``[1, H, W]`` in [-1, 1].

Augmentation is deterministic: item ``i`` of epoch ``e`` draws from ``numpy.random.default_rng([seed, e, i])``,
whichever worker process loads it. The validation split is by file number (never random): the highest
``val_fraction`` of the numbers, or every ``val_every``-th file.

Class balance: :func:`tile_weights` / :meth:`PairsDataset.sampler` give a ``WeightedRandomSampler`` that
draws tiles by the inverse frequency of the classes they contain (LandCover.ai is half water).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from ..errors import InputError
from .pairs import LabelMap, PairSet, labels_to_ids, load_label_map, pair_number

#: Share of the pairs (highest file numbers) held out for validation by default. With the 1024 LandCover.ai
#: pairs this is numbers >= 896, the project's fixed split (geogan.training.pairs.VAL_FROM_NUMBER).
VAL_FRACTION = 0.125

__all__ = [
    "VAL_FRACTION", "split_by_number", "val_from_number", "list_pair_files", "unmatched_fraction",
    "read_pair_checked", "load_pairset", "class_histograms", "tile_weights", "PairsDataset", "ChipsDataset",
]


# ---------------------------------------------------------------- files and the validation split
def list_pair_files(pairs_dir: str | Path) -> list[Path]:
    """The ``*.png`` pair files of a folder, sorted by the number in their names."""
    pairs_dir = Path(pairs_dir)
    if not pairs_dir.is_dir():
        raise InputError(f"pairs directory '{pairs_dir}' does not exist; give a folder of side-by-side PNG pairs")
    files = sorted(pairs_dir.glob("*.png"), key=pair_number)
    if not files:
        raise InputError(f"'{pairs_dir}' holds no *.png pairs; give a folder of side-by-side PNG pairs")
    return files


def split_by_number(files: Sequence[str | Path], *, val_fraction: float | None = None, val_every: int | None = None,
                    val_from: int | None = None) -> tuple[list[Path], list[Path]]:
    """(train, val) files, split by the number in the file names -- deterministic, never random.

    Exactly one rule (default: ``val_fraction=0.125``):

    - ``val_fraction``: the files with the highest numbers (a contiguous block: neighbouring tiles of one
      scene stay on one side, so validation is not a near-copy of training);
    - ``val_every``: every ``val_every``-th file in number order (positions ``val_every-1, 2*val_every-1, ...``;
      spreads validation over the whole set when the numbering follows scenes);
    - ``val_from``: numbers ``>= val_from``.
    """
    given = [r for r in (val_fraction, val_every, val_from) if r is not None]
    if len(given) > 1:
        raise InputError("give one validation rule: val_fraction, val_every or val_from")
    ordered = sorted((Path(f) for f in files), key=pair_number)
    if val_every is not None:
        if val_every < 2:
            raise InputError(f"val_every must be >= 2 (got {val_every})")
        val = [f for i, f in enumerate(ordered) if i % val_every == val_every - 1]
    else:
        if val_from is None:
            val_from = val_from_number(ordered, VAL_FRACTION if val_fraction is None else val_fraction)
        val = [f for f in ordered if pair_number(f) >= val_from]
    val_set = set(val)
    return [f for f in ordered if f not in val_set], val


def val_from_number(files: Sequence[str | Path], val_fraction: float = VAL_FRACTION) -> int:
    """The file number from which the highest ``val_fraction`` of ``files`` begins.

    1024 files numbered 0..1023 and 0.125 give 896; 0 gives a number past the last file (no validation).
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1) (got {val_fraction})")
    numbers = sorted(pair_number(Path(f)) for f in files)
    if not numbers:
        raise InputError("no pair files to split")
    n_val = math.ceil(len(numbers) * val_fraction) if val_fraction > 0 else 0
    if n_val >= len(numbers):
        n_val = len(numbers) - 1  # keep at least one training file
    return numbers[len(numbers) - n_val] if n_val else numbers[-1] + 1


# ---------------------------------------------------------------- label checks
def unmatched_fraction(label_rgb: np.ndarray, label_map: LabelMap, tolerance: float) -> float:
    """Share of label pixels further than ``tolerance`` (largest channel difference) from every configured value."""
    keys = np.array(list(label_map.values), dtype=np.int16)  # (K, 1) grey or (K, 3) RGB
    if keys.shape[1] == 1:  # grey values: (v, v, v), so coloured pixels do not match
        keys = np.repeat(keys, 3, 1)
    px = label_rgb.astype(np.int16)
    px = np.repeat(px[..., None], 3, -1) if px.ndim == 2 else px[..., :3]
    best = np.full(px.shape[:2], 1 << 14, dtype=np.int16)
    for k in keys:
        np.minimum(best, np.abs(px - k).max(-1), out=best)
    return float((best > tolerance).mean())


def _label_tolerance(label_map: LabelMap, path: Path | None) -> tuple[float, float]:
    """(tolerance, max_unmatched) from the label map's TOML (defaults 40 and 0.05)."""
    tol, max_un = 40.0, 0.05
    if path is not None and path.is_file():
        import tomllib
        try:
            d = tomllib.loads(path.read_text(encoding="utf-8"))
            tol, max_un = float(d.get("tolerance", tol)), float(d.get("max_unmatched", max_un))
        except (tomllib.TOMLDecodeError, ValueError, TypeError):
            pass
    return tol, max_un


def read_pair_checked(path: Path, label_map: LabelMap, tolerance: float = 40.0,
                      max_unmatched: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), class ids uint8 (H, W)) of one pair; InputError when the labels do not fit the map.

    Every label pixel takes the nearest configured value (anti-aliased edges included); a tile where more than
    ``max_unmatched`` of the pixels are further than ``tolerance`` from every value was most likely drawn
    with another legend.
    """
    from PIL import Image
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise InputError(f"cannot read pair '{path}' ({exc}); give PNG pairs") from None
    h, w, _ = arr.shape
    if w % 2:
        raise InputError(f"pair '{path.name}' is {w}x{h}; expected the image and the label map side by side")
    image, label_rgb = np.ascontiguousarray(arr[:, : w // 2]), arr[:, w // 2:]
    bad = unmatched_fraction(label_rgb, label_map, tolerance)
    if bad > max_unmatched:
        raise InputError(f"pair '{path.name}': {bad:.0%} of its label pixels match no value of label map "
                         f"'{label_map.name}'; choose the label map made for this data (--label-map)")
    return image, labels_to_ids(label_rgb, label_map)


def _resolve_label_map(label_map: str | Path | LabelMap) -> tuple[LabelMap, Path | None]:
    if isinstance(label_map, LabelMap):
        return label_map, None
    lm = load_label_map(label_map)
    p = Path(str(label_map))
    if not p.suffix:
        from importlib import resources
        p = Path(str(resources.files("geogan").joinpath(f"data/label_maps/{label_map}.toml")))
    return lm, p


def load_pairset(files: Sequence[str | Path], label_map: str | Path | LabelMap, *, check: bool = True) -> PairSet:
    """A :class:`PairSet` (all tiles in memory) of ``files``, with the label-tolerance check."""
    lm, path = _resolve_label_map(label_map)
    files = [Path(f) for f in files]
    if not files:
        raise InputError("no pair files given")
    tol, max_un = _label_tolerance(lm, path) if check else (float("inf"), 1.0)
    items = [read_pair_checked(f, lm, tol, max_un) for f in files]
    shapes = {i.shape for i, _ in items}
    if len(shapes) > 1:
        raise InputError(f"pairs differ in size ({sorted(shapes)[:3]}); all pairs must have one size")
    return PairSet(np.stack([i for i, _ in items]), np.stack([l for _, l in items]), lm,
                   [pair_number(f) for f in files])


# ---------------------------------------------------------------- class balance
def class_histograms(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, C) share of each class in each tile of ``labels`` (N, H, W) uint8."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1).astype(np.int64) + np.arange(n)[:, None] * n_classes
    counts = np.bincount(flat.ravel(), minlength=n * n_classes).reshape(n, n_classes)
    return counts / labels[0].size


def tile_weights(hist: np.ndarray, *, mode: str = "mixture", power: float = 0.5) -> np.ndarray:
    """Sampling weight of each tile (sums to 1) from its class histogram ``hist`` (N, C).

    - ``"dominant"``: by the tile's dominant class: ``(1 / n_tiles_with_that_dominant_class) ** power``.
      With ``power=1`` every dominant class present gets the same share of draws.
    - ``"mixture"``: ``sum_c share_tc / freq_c`` raised to ``power`` (``freq_c`` = the class's share of all
      pixels): tiles with rare classes anywhere in them (buildings, roads) are drawn more.
    ``power=0`` gives uniform sampling.

    On the 1024 LandCover.ai pairs (pixel shares background/building/woodland/water/road
    .28/.015/.09/.59/.03), the expected share of drawn pixels and the effective number of distinct tiles:

    ==============  ==============================  =====
    weighting       drawn class mix                 ESS
    ==============  ==============================  =====
    mixture, 0.5    .39/.029/.13/.39/.055 (default)  844
    mixture, 1      .48/.046/.17/.23/.079            544
    dominant, 0.5   .32/.016/.14/.47/.050            694
    dominant, 1     .34/.012/.22/.29/.14              31
    ==============  ==============================  =====

    ("dominant, 1" puts a quarter of all draws on the two road-dominated tiles: avoid.)
    """
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 2 or not len(hist):
        raise ValueError("hist must be (N, C) with N >= 1")
    if mode == "dominant":
        dom = hist.argmax(1)
        per_class = np.bincount(dom, minlength=hist.shape[1]).astype(np.float64)
        w = (1.0 / per_class[dom]) ** power
    elif mode == "mixture":
        freq = hist.mean(0)
        w = (hist @ (1.0 / np.maximum(freq, 1e-4))) ** power
    else:
        raise ValueError(f"unknown weighting mode {mode!r}; use 'dominant' or 'mixture'")
    return w / w.sum()


# ---------------------------------------------------------------- datasets
class _TileDataset(Dataset):
    """Shared item logic over a PairSet-like ``tiles`` (with ``batch(idx, rng, flip=, jitter=, crop_px=)``)."""

    tiles: PairSet

    def __init__(self, tiles: PairSet, size: int | None, jitter: bool, flip: bool, seed: int) -> None:
        self.tiles = tiles
        tile_px = tiles.images.shape[1]
        self.size = tile_px if size is None else int(size)
        if self.size > tile_px or self.size < 8:
            raise InputError(f"size {self.size} does not fit the {tile_px} px tiles; use 8..{tile_px}")
        self.jitter, self.flip, self.seed, self.epoch = jitter, flip, int(seed), 0

    @property
    def label_map(self) -> LabelMap:
        return self.tiles.label_map

    @property
    def classes(self) -> tuple[str, ...]:
        return self.tiles.label_map.classes

    @property
    def numbers(self) -> list[int]:
        return list(self.tiles.numbers)

    def __len__(self) -> int:
        return len(self.tiles)

    def set_epoch(self, epoch: int) -> None:
        """Items of another epoch draw other augmentations (call before each epoch)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        crop = self.size if self.size < self.tiles.images.shape[1] else None
        out = self.tiles.batch([index], self.rng(index), flip=self.flip, jitter=self.jitter, crop_px=crop)
        return tuple(t[0] for t in out)

    def class_histograms(self) -> np.ndarray:
        """(N, C) class shares per tile (before augmentation)."""
        return class_histograms(self.tiles.labels, len(self.classes))

    def tile_weights(self, mode: str = "mixture", power: float = 0.5) -> np.ndarray:
        return tile_weights(self.class_histograms(), mode=mode, power=power)

    def sampler(self, mode: str = "mixture", power: float = 0.5, num_samples: int | None = None,
                generator: torch.Generator | None = None) -> WeightedRandomSampler:
        """A class-balanced ``WeightedRandomSampler`` (with replacement, ``len(self)`` draws per epoch)."""
        w = torch.as_tensor(self.tile_weights(mode, power), dtype=torch.double)
        return WeightedRandomSampler(w, num_samples or len(self), replacement=True, generator=generator)


class PairsDataset(_TileDataset):
    """Side-by-side pairs (left aerial image, right label map) as (one-hot labels, image) items.

    Parameters
    ----------
    dir : folder of ``*.png`` pairs (numbered file names), or None with ``files``.
    label_map : built-in name (``landcoverai``, ``recife``), TOML path, or a loaded LabelMap.
    size : output size in pixels (random crops when smaller than the tiles; default 256).
    jitter : pix2pix random jitter: resize to 286/256 of the tile (nearest for labels, bilinear for the
        image) and crop back at a random place.
    flip : random mirror and 90-degree rotation (aerial views have no "up").
    files : explicit pair files (then ``split`` is ignored).
    split : ``"train"``, ``"val"`` or ``"all"``, by file number (see :func:`split_by_number`).
    val_fraction, val_every : the split rule (default: the highest 12.5 % of the numbers).
    seed : augmentation seed (items are a function of seed, epoch and index).
    check_labels : reject tiles whose label colours do not fit the label map.
    """

    def __init__(self, dir: str | Path | None = None, label_map: str | Path | LabelMap = "landcoverai",
                 size: int | None = 256, jitter: bool = True, flip: bool = True, *,
                 files: Sequence[str | Path] | None = None, split: str = "train", val_fraction: float | None = None,
                 val_every: int | None = None, seed: int = 0, check_labels: bool = True) -> None:
        if files is None:
            if dir is None:
                raise InputError("give a pairs folder or a list of pair files")
            all_files = list_pair_files(dir)
            if split == "all":
                files = all_files
            elif split in ("train", "val"):
                train, val = split_by_number(all_files, val_fraction=val_fraction, val_every=val_every)
                files = train if split == "train" else val
                if not files:
                    raise InputError(f"the {split} split of '{dir}' is empty; change val_fraction / val_every")
            else:
                raise InputError(f"unknown split '{split}'; use train, val or all")
        super().__init__(load_pairset(files, label_map, check=check_labels), size, jitter, flip, seed)
        self.files = [Path(f) for f in files]


class ChipsDataset(_TileDataset):
    """Chips written by :func:`geogan.training.chips.make_chips` as (labels, image[, height]) items.

    The classes are the chips' own (the geogan schema's 12, as written in the chips' ``label_map.toml``);
    items carry ``height`` [1, H, W] in [-1, 1] when the chips were cut with a DEM. The split is the one in
    the chips' ``index.json`` (the last tenth of the chips by number is validation).
    """

    def __init__(self, dir: str | Path, split: str = "train", size: int | None = None, flip: bool = True, *,
                 seed: int = 0) -> None:
        from .chips import ChipSet
        if split not in ("train", "val", "all"):
            raise InputError(f"unknown split '{split}'; use train, val or all")
        tiles = ChipSet.load(Path(dir), split)
        if size is not None and size != tiles.images.shape[1]:
            raise InputError(f"chips in '{dir}' are {tiles.images.shape[1]} px; cut them at {size} px "
                             "(geogan chips --chip-size) instead of cropping")
        super().__init__(tiles, None, False, flip, seed)

    @property
    def has_heights(self) -> bool:
        return getattr(self.tiles, "heights", None) is not None
