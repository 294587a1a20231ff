"""Side-by-side training pairs (left: aerial image, right: label map) and their label maps.

A label map config (TOML, see ``geogan/data/label_maps/``) says which label pixel value (a grey
level, or an RGB triple written "r,g,b") is which model class, and how the geogan schema's classes
map onto those model classes. The validation split is by file number, never at random.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

VAL_FROM_NUMBER = 896  # pairs numbered >= this are the validation split


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: tuple[str, ...]
    values: dict[tuple[int, ...], str]  # (grey,) or (r, g, b) -> class
    schema_to_model: dict[str, str] = field(default_factory=dict)
    gsd_m: float = 0.5
    data: str = ""
    license: str = ""

    @property
    def is_grey(self) -> bool:
        return all(len(k) == 1 for k in self.values)


def load_label_map(name_or_path: str | Path) -> LabelMap:
    """A label map config by built-in name (``landcoverai``) or TOML path."""
    p = Path(str(name_or_path))
    if not p.suffix:
        p = Path(str(resources.files("geogan").joinpath(f"data/label_maps/{name_or_path}.toml")))
    if not p.is_file():
        raise InputError(f"label map '{name_or_path}' not found; use 'landcoverai' or a TOML file path")
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
        classes = tuple(d["classes"])
        values = {tuple(int(v) for v in str(k).split(",")): str(c) for k, c in d["values"].items()}
    except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise InputError(f"label map '{p}' is malformed ({exc}); it needs classes = [...] and a [values] table") from None
    bad = [c for c in values.values() if c not in classes]
    if bad:
        raise InputError(f"label map '{p}': values map to unknown classes {bad}; add them to 'classes'")
    return LabelMap(str(d.get("name", p.stem)), classes, values, dict(d.get("schema_to_model", {})),
                    float(d.get("gsd_m", 0.5)), str(d.get("data", "")), str(d.get("license", "")))


def pair_number(path: Path) -> int:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    if not digits:
        raise InputError(f"pair file '{path.name}' has no number in its name; name pairs like pair_0001.png")
    return int(digits)


def merge_pairsets(sets: Sequence["PairSet"]) -> "PairSet":
    """One PairSet of several (e.g. LandCover.ai and Recife read with one class list), in the given order.

    The sets must share their model classes and tile size. The merged label map keeps the first set's
    values, schema mapping and GSD, and names every set's data and licence.
    """
    sets = list(sets)
    if len(sets) == 1:
        return sets[0]
    first = sets[0].label_map
    for s in sets[1:]:
        if s.label_map.classes != first.classes:
            raise InputError(f"label maps '{first.name}' and '{s.label_map.name}' have different classes "
                             f"({list(first.classes)} vs {list(s.label_map.classes)}); train several sets only "
                             "with label maps that share one class list")
        if s.images.shape[1:] != sets[0].images.shape[1:]:
            raise InputError(f"pairs of '{s.label_map.name}' are {s.images.shape[1]} px, those of '{first.name}' "
                             f"{sets[0].images.shape[1]} px; all pairs must have one size")
    lms = [s.label_map for s in sets]
    merged = LabelMap("+".join(m.name for m in lms), first.classes, first.values, first.schema_to_model,
                      first.gsd_m, " + ".join(m.data or m.name for m in lms),
                      "; ".join(f"{m.name}: {m.license or 'see its data'}" for m in lms))
    return PairSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]), merged,
                   [n for s in sets for n in s.numbers])


def list_pairs(pairs_dir: Path, split: str = "val", val_from: int = VAL_FROM_NUMBER) -> list[Path]:
    """Pair files of a split: 'train' (numbered < val_from), 'val' (>=), or 'all'."""
    pairs_dir = Path(pairs_dir)
    if not pairs_dir.is_dir():
        raise InputError(f"pairs directory '{pairs_dir}' does not exist; give a folder of side-by-side PNG pairs")
    files = sorted(pairs_dir.glob("*.png"), key=pair_number)
    if split == "train":
        files = [f for f in files if pair_number(f) < val_from]
    elif split == "val":
        files = [f for f in files if pair_number(f) >= val_from]
    if not files:
        raise InputError(f"no {split} pairs (*.png) in '{pairs_dir}'; validation pairs are numbered >= {val_from}")
    return files


def labels_to_ids(label_rgb: np.ndarray, label_map: LabelMap) -> np.ndarray:
    """Class indices of a label image, each pixel taking the nearest configured value (anti-aliasing safe)."""
    keys = list(label_map.values)
    ids = np.array([label_map.classes.index(label_map.values[k]) for k in keys], dtype=np.uint8)
    if label_map.is_grey:
        ref = np.array([k[0] for k in keys], dtype=np.int64)
        px = label_rgb[..., 0].astype(np.int64)
        return ids[np.abs(px[..., None] - ref).argmin(-1)]
    ref = np.array(keys, dtype=np.int64)
    px = label_rgb.astype(np.int64)
    d = ((px[..., None, :] - ref[None, None]) ** 2).sum(-1)
    return ids[d.argmin(-1)]


def read_pair(path: Path, label_map: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), class ids uint8 (H, W)) of one side-by-side pair."""
    try:
        arr = np.asarray(Image.open(path).convert("RGB"))
    except OSError as exc:
        raise InputError(f"cannot read pair '{path}' ({exc}); give PNG pairs") from None
    h, w, _ = arr.shape
    if w % 2:
        raise InputError(f"pair '{path.name}' is {w}x{h}; expected the image and the label map side by side")
    return np.ascontiguousarray(arr[:, : w // 2]), labels_to_ids(arr[:, w // 2:], label_map)


@dataclass
class PairSet:
    """All pairs of a split in memory (uint8), with sampling and augmentation."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, H, W) uint8 model class ids
    label_map: LabelMap
    numbers: list[int]

    @classmethod
    def load(cls, pairs_dir: Path, label_map: LabelMap, split: str, val_from: int = VAL_FROM_NUMBER) -> "PairSet":
        files = list_pairs(pairs_dir, split, val_from)
        items = [read_pair(f, label_map) for f in files]
        return cls(np.stack([i for i, _ in items]), np.stack([l for _, l in items]), label_map,
                   [pair_number(f) for f in files])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_classes(self) -> int:
        return len(self.label_map.classes)

    def class_balanced_weights(self, strength: float = 1.0) -> np.ndarray:
        """Per-tile sampling weights favouring tiles with rare classes (inverse class frequency)."""
        freq = np.bincount(self.labels.ravel(), minlength=self.n_classes) / self.labels.size
        inv = 1.0 / np.maximum(freq, 1e-4)
        per_tile = np.stack([(self.labels == c).mean((1, 2)) for c in range(self.n_classes)], 1) @ inv
        w = per_tile ** strength
        return w / w.sum()

    def batch(self, idx: Sequence[int], rng: np.random.Generator, *, flip: bool = True, jitter: bool = False,
              crop_px: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot labels (B, C, S, S), images (B, 3, S, S) in [-1, 1]) with augmentation.

        ``flip``: random mirror and 90-degree rotation (aerial views have no up);
        ``jitter``: pix2pix random jitter (resize to 286/256 of the size, random crop back);
        ``crop_px``: random crops of this size.
        """
        img = torch.from_numpy(self.images[list(idx)]).permute(0, 3, 1, 2).float() / 127.5 - 1
        lab = torch.from_numpy(self.labels[list(idx)].astype(np.int64))
        size = img.shape[-1]
        if jitter:
            big = int(round(size * 286 / 256))
            img = F.interpolate(img, size=(big, big), mode="bilinear", align_corners=False)
            lab = F.interpolate(lab[:, None].float(), size=(big, big), mode="nearest")[:, 0].long()
            y, x = rng.integers(0, big - size + 1, 2)
            img, lab = img[..., y:y + size, x:x + size], lab[..., y:y + size, x:x + size]
        if crop_px is not None and crop_px < size:
            y, x = rng.integers(0, size - crop_px + 1, 2)
            img, lab = img[..., y:y + crop_px, x:x + crop_px], lab[..., y:y + crop_px, x:x + crop_px]
        if flip:
            if rng.random() < 0.5:
                img, lab = img.flip(-1), lab.flip(-1)
            k = int(rng.integers(0, 4))
            img, lab = torch.rot90(img, k, (-2, -1)), torch.rot90(lab, k, (-2, -1))
        onehot = F.one_hot(lab, self.n_classes).permute(0, 3, 1, 2).float()
        return onehot.contiguous(), img.contiguous()
