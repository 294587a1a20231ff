"""Class sources for rendering, and hand-painted sketches.

Render needs, for any grid window, a class map and object heights: the
:class:`ClassSource` protocol. Vector features (``features.FeatureSet``) are
rasterized by ``rasterizer.VectorClassSource``; a :class:`RasterClassSource`
resamples a class raster (nearest neighbour) onto the window.

A sketch is a PNG painted in any editor with the palette colours of the class
schema (``geogan classes``). Anti-aliased edges and slight colour shifts are
tolerated: every pixel takes the class of the nearest palette colour, and
pixels far from every palette colour (blends between two classes) take the
majority class of their 3x3 neighbourhood.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio.warp
from PIL import Image, UnidentifiedImageError

from .classes import Schema
from .errors import InputError
from .grid import Grid

MAX_SKETCH_PX = 20_000


class ClassSource(Protocol):
    def classes(self, grid: Grid) -> np.ndarray: ...

    def object_heights(self, grid: Grid) -> np.ndarray: ...


@dataclass
class RasterClassSource:
    """A class-id raster on its own grid, resampled (nearest) onto any window."""

    class_map: np.ndarray  # uint8 (H, W)
    grid: Grid

    def classes(self, grid: Grid) -> np.ndarray:
        out = np.zeros(grid.shape_yx, dtype=np.uint8)
        rasterio.warp.reproject(self.class_map, out, src_transform=self.grid.transform,
                                src_crs=self.grid.crs.to_wkt(), dst_transform=grid.transform,
                                dst_crs=grid.crs.to_wkt(), resampling=rasterio.warp.Resampling.nearest,
                                src_nodata=None, dst_nodata=0, init_dest_nodata=True)
        return out

    def object_heights(self, grid: Grid) -> np.ndarray:
        return np.zeros(grid.shape_yx, dtype=np.float32)


def _neighbour_majority(classes: np.ndarray, trusted: np.ndarray, n_classes: int, radius: int) -> np.ndarray:
    """Per pixel, the most common trusted class in its (2r+1)^2 window (-1 where none is trusted)."""
    h, w = classes.shape
    votes = np.zeros((n_classes, h, w), dtype=np.int32)
    onehot = np.zeros((n_classes, h + 2 * radius, w + 2 * radius), dtype=np.int32)
    pc = np.pad(classes, radius, mode="edge")
    pt = np.pad(trusted, radius, mode="constant")
    for k in range(n_classes):
        onehot[k] = (pc == k) & pt
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            votes += onehot[:, dy:dy + h, dx:dx + w]
    best = votes.argmax(0)
    return np.where(votes.max(0) > 0, best, -1)


def palette_classes(rgb: np.ndarray, schema: Schema, tolerance: float = 16.0) -> np.ndarray:
    """Class ids of an (H, W, 3) uint8 image painted with the schema palette.

    Pixels within ``tolerance`` (RGB distance) of a palette colour take its class.
    The others are anti-aliased blends: they take the most common confident class
    among their neighbours (3x3, then 7x7), or the nearest colour as a last resort.
    Finally, isolated single pixels (a blend that happened to land near a third
    colour, e.g. grey between a black road and white ground) join their neighbours.
    """
    n = len(schema.classes)
    colors = np.array([c.color for c in schema.classes], dtype=np.float32)
    px = rgb.reshape(-1, 3).astype(np.float32)
    d = ((px[:, None, :] - colors[None, :, :]) ** 2).sum(-1)
    out = d.argmin(1).astype(np.int64).reshape(rgb.shape[:2])
    confident = (np.sqrt(d.min(1)) <= tolerance).reshape(rgb.shape[:2])
    for radius in (1, 3):
        if confident.all():
            break
        majority = _neighbour_majority(out, confident, n, radius)
        fix = ~confident & (majority >= 0)
        out[fix] = majority[fix]
        confident = confident | fix
    same = _neighbour_majority(out, np.ones_like(confident), n, 1)
    alone = np.ones_like(confident)
    po = np.pad(out, 1, mode="edge")
    h, w = out.shape
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            alone &= po[dy:dy + h, dx:dx + w] != out
    out[alone] = same[alone]
    return out.astype(np.uint8)


def read_sketch(path: str | Path, schema: Schema) -> np.ndarray:
    """A sketch PNG (or any image PIL reads) as schema class ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sketch '{path}' does not exist; paint a PNG with the colours from 'geogan classes'")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_SKETCH_PX ** 2:
                raise InputError(f"sketch '{path}' is {im.width}x{im.height} px; keep it under "
                                 f"{MAX_SKETCH_PX}x{MAX_SKETCH_PX}")
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"sketch '{path}' is not a readable image ({type(exc).__name__}); save it as PNG") from None
    except Image.DecompressionBombError:
        raise InputError(f"sketch '{path}' is too large; keep it under {MAX_SKETCH_PX}x{MAX_SKETCH_PX}") from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 2:
        raise InputError(f"sketch '{path}' is too small; paint at least 2x2 pixels")
    return palette_classes(rgb, schema)


def sketch_source(path: str | Path, grid: Grid, schema: Schema) -> RasterClassSource:
    """A sketch stretched over the output grid's bounds (north up)."""
    classes = read_sketch(path, schema)
    sketch_grid = grid.resized(*classes.shape)
    return RasterClassSource(classes, sketch_grid)
