"""`geogan chips`: georeferenced training chips from an orthophoto and a class source.

The orthophoto (any GeoTIFF, any CRS), the class source (vector files classified by geogan's rules or
a class field, or a class GeoTIFF) and an optional DEM are all brought onto one grid -- the chosen CRS
at the chosen ground GSD -- and cut into aligned square chips. Chips are written in the same
side-by-side PNG layout as the shared pairs (left image, right class ids as grey values) with a
``label_map.toml``, so the trainer reads them like any pairs; heights go to ``heights/NAME.npy``.
The last tenth of the chips (by number) is the validation split.

Memory: the whole grid is held in memory (fine for chip-sized areas, not for a country).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import rasterio.warp
import torch
from PIL import Image

from ..classes import load_schema
from ..errors import InputError, OutputError
from ..grid import grid_from_bbox, parse_crs
from .pairs import PairSet, load_label_map

HEIGHT_RANGE_M = 100.0  # chip heights (relative to the chip's lowest point) 0..100 m map to [-1, 1]


def _ortho_grid(ortho: Path, crs, gsd_m: float):
    try:
        with rasterio.open(ortho) as ds:
            if ds.crs is None:
                raise InputError(f"orthophoto '{ortho}' has no CRS; assign one (gdal_edit.py -a_srs EPSG:...)")
            src_crs = parse_crs(ds.crs.to_wkt())
            bounds = tuple(ds.bounds)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open orthophoto '{ortho}' ({exc}); give a GeoTIFF") from None
    return grid_from_bbox(bounds, src_crs, parse_crs(crs) if crs else src_crs, gsd_m)


def _warp(path: Path, grid, bands: Sequence[int], resampling, dtype) -> np.ndarray:
    out = np.zeros((len(bands),) + grid.shape_yx, dtype=dtype)
    with rasterio.open(path) as ds:
        for i, b in enumerate(bands):
            rasterio.warp.reproject(rasterio.band(ds, b), out[i], dst_transform=grid.transform,
                                    dst_crs=grid.crs.to_wkt(), resampling=resampling, dst_nodata=0)
    return out


def make_chips(ortho: Path, out_dir: Path, *, vectors: Sequence[Path] = (), class_raster: Path | None = None,
               class_field: str | None = None, gsd_m: float = 0.5, chip_px: int = 256, crs: str | None = None,
               dem: Path | None = None, rules: Path | None = None, min_valid: float = 0.95) -> dict:
    """Write aligned chips; returns the index (also saved as ``index.json``)."""
    if bool(vectors) == (class_raster is not None):
        raise InputError("give the classes as vector files (--vector) or as a class GeoTIFF (--class-raster)")
    out_dir = Path(out_dir)
    if (out_dir / "index.json").exists() or any(out_dir.glob("chip_*.png")):
        raise OutputError(f"'{out_dir}' already holds chips; choose another output folder or delete it first")
    schema = load_schema(rules)
    grid = _ortho_grid(Path(ortho), crs, gsd_m)
    if grid.height < chip_px or grid.width < chip_px:
        raise InputError(f"the orthophoto covers only {grid.width}x{grid.height} px at {gsd_m} m; "
                         f"lower --chip-size or --gsd")
    with rasterio.open(ortho) as ds:
        bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
    rgb = _warp(Path(ortho), grid, bands, rasterio.warp.Resampling.bilinear, np.uint8)
    if vectors:
        from ..inputs import read_features
        from ..rasterizer import rasterize_classes
        feats, _ = read_features([Path(v) for v in vectors], grid, schema, class_field, 2)
        classes = rasterize_classes(feats, grid)
    else:
        classes = _warp(Path(class_raster), grid, [1], rasterio.warp.Resampling.nearest, np.uint8)[0]
    heights = None
    if dem is not None:
        from ..terrain import read_dem_window
        heights = read_dem_window(dem, grid)
    out_dir = Path(out_dir)
    (out_dir / "heights").mkdir(parents=True, exist_ok=True)
    names = []
    n = 0
    for r in range(0, grid.height - chip_px + 1, chip_px):
        for c in range(0, grid.width - chip_px + 1, chip_px):
            img = rgb[:, r:r + chip_px, c:c + chip_px].transpose(1, 2, 0)
            if (img.max(-1) > 0).mean() < min_valid:
                continue  # outside the orthophoto
            lab = classes[r:r + chip_px, c:c + chip_px]
            if heights is not None and not np.isfinite(heights[r:r + chip_px, c:c + chip_px]).all():
                continue  # the DEM has holes (or ends) here: no chip rather than made-up heights
            name = f"chip_{n:05d}"
            pair = np.concatenate([img, np.repeat(lab[..., None], 3, -1)], 1)
            Image.fromarray(pair).save(out_dir / f"{name}.png")
            if heights is not None:
                np.save(out_dir / "heights" / f"{name}.npy", heights[r:r + chip_px, c:c + chip_px].astype(np.float32))
            names.append({"name": name, "row": r, "col": c})
            n += 1
    if not names:
        raise InputError("no chip lies fully inside the orthophoto; check the inputs' CRSs and extents")
    lines = ['name = "chips"', f"classes = {json.dumps(schema.names)}", f"gsd_m = {gsd_m}",
             f'data = "chips of {Path(ortho).name}"', "", "[values]"]
    lines += [f'{c.id} = "{c.name}"' for c in schema.classes]
    lines += ["", "[schema_to_model]"] + [f'{c.name} = "{c.name}"' for c in schema.classes]
    (out_dir / "label_map.toml").write_text("\n".join(lines) + "\n")
    index = {"crs": grid.crs.to_wkt(), "transform": list(grid.transform)[:6], "shape_yx": list(grid.shape_yx),
             "gsd_m": gsd_m, "chip_px": chip_px, "chips": names, "val_from": int(np.ceil(n * 0.9)) if n > 1 else n,
             "heights": heights is not None}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


@dataclass
class ChipSet(PairSet):
    """Chips written by :func:`make_chips`; batches carry heights when the chips have them."""

    heights: np.ndarray | None = None
    height_ref: str = "min"  # "min": old 0..100 m above the chip minimum; "mean": (h - chip mean) / scale
    height_scale_m: float = HEIGHT_RANGE_M / 2  # metres per unit of the normalised height (the card's value)

    @classmethod
    def load(cls, chips_dir: Path, split: str) -> "ChipSet":  # type: ignore[override]
        chips_dir = Path(chips_dir)
        if not (chips_dir / "index.json").is_file():
            raise InputError(f"'{chips_dir}' holds no chips (index.json); make them with 'geogan chips'")
        index = json.loads((chips_dir / "index.json").read_text())
        base = PairSet.load(chips_dir, load_label_map(chips_dir / "label_map.toml"), split, index["val_from"])
        heights = None
        if index.get("heights"):
            heights = np.stack([np.load(chips_dir / "heights" / f"chip_{n:05d}.npy") for n in base.numbers])
        if index.get("height_ref", "min") not in ("min", "mean"):
            raise InputError(f"'{chips_dir}/index.json': unknown height_ref {index['height_ref']!r}; use min or mean")
        return cls(base.images, base.labels, base.label_map, base.numbers, heights,
                   index.get("height_ref", "min"), float(index.get("height_scale_m", HEIGHT_RANGE_M / 2)))

    def batch(self, idx, rng, *, flip=True, jitter=False, crop_px=None):
        """Like PairSet.batch (no jitter, no crops); with heights, (labels, image, height in [-1, 1])."""
        if self.heights is None:
            return super().batch(idx, rng, flip=flip)
        state = rng.bit_generator.state
        x, img = super().batch(idx, rng, flip=flip)
        h = normalize_heights(torch.from_numpy(self.heights[list(idx)]), self.height_ref, self.height_scale_m)
        return x, img, _apply_same_flip(h[:, None], state, flip)


def normalize_heights(h: torch.Tensor, ref: str = "min", scale_m: float = HEIGHT_RANGE_M / 2) -> torch.Tensor:
    """Chip heights (B, H, W) in metres -> [-1, 1].

    ``ref="min"`` (``geogan chips``): 0..HEIGHT_RANGE_M m above the chip's lowest point map to [-1, 1].
    ``ref="mean"`` (``geogan terrain-chips``): ``(h - chip mean) / scale_m``, clipped; the inverse is
    ``h_norm * scale_m`` metres relative to the chip mean (the model card's ``height_scale_m``).
    """
    h = h.double()
    if ref == "mean":
        out = (h - h.flatten(1).mean(1)[:, None, None]) / float(scale_m)
    else:
        out = (h - h.flatten(1).min(1).values[:, None, None]) / HEIGHT_RANGE_M * 2 - 1
    return out.clamp(-1, 1).float()


def _apply_same_flip(h: torch.Tensor, state: dict, flip: bool) -> torch.Tensor:
    """Apply the flip/rotation that PairSet.batch drew from a generator in ``state`` (flips are its first draws)."""
    if not flip:
        return h
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    if rng.random() < 0.5:
        h = h.flip(-1)
    k = int(rng.integers(0, 4))
    return torch.rot90(h, k, (-2, -1))


__all__ = ["make_chips", "ChipSet", "normalize_heights"]
