"""Dream training data: class tiles cut from rasterized OpenStreetMap data, and class maps as palette images."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..classes import Schema
from ..errors import InputError
from .model import BBox, PathLike

log = logging.getLogger("geogan")

def _cut_tiles(class_map: np.ndarray, tile_px: int, stride_px: int, min_mapped: float) -> list[np.ndarray]:
    h, w = class_map.shape
    out = []
    for r in range(0, h - tile_px + 1, stride_px):
        for c in range(0, w - tile_px + 1, stride_px):
            tile = class_map[r:r + tile_px, c:c + tile_px]
            if np.count_nonzero(tile) >= min_mapped * tile.size:
                out.append(tile.copy())
    return out


def class_tiles_from_osm(osm_paths: PathLike | Sequence[PathLike], bbox_lonlat: BBox | None = None,
                         crs: str = "EPSG:3857", gsd_m: float = 4.0, tile_px: int = 64, *,
                         stride_px: int | None = None, min_mapped: float = 0.5,
                         rules: PathLike | None = None, extra_gsd_m: Sequence[float] = ()) -> np.ndarray:
    """Class tiles ``uint8 (N, tile_px, tile_px)`` cut from rasterized OSM data.

    Parameters
    ----------
    osm_paths : one path or several (OSM .osm / .osm.pbf, or any vector source geogan reads).
    bbox_lonlat : (lon_min, lat_min, lon_max, lat_max) rasterized from all sources together; None
        rasterizes each source over its own data extent (sources may then lie in different towns).
    crs : the CRS rasterized in (any; the GSD is in ground metres).
    gsd_m : pixel size in ground metres; 4-8 m lets a 64 px tile hold a street pattern.
    tile_px : tile side. stride_px : step between tiles (default ``tile_px // 2``).
    min_mapped : keep a tile only when at least this fraction of it is not background (class 0).
    extra_gsd_m : further pixel sizes to rasterize at too (scale augmentation: e.g. 3.2 and 5 around a
        4 m model make towns a little denser and sparser; the model's GSD stays ``gsd_m``).

    Raises
    ------
    InputError
        When no tile passes (area too small for the tile size, or unmapped).
    """
    from ..api import rasterize_array

    paths = [osm_paths] if isinstance(osm_paths, (str, os.PathLike)) else list(osm_paths)
    if not paths:
        raise InputError("class_tiles_from_osm: give at least one OSM file")
    if not 0.0 <= min_mapped <= 1.0:
        raise InputError(f"min_mapped {min_mapped} must be between 0 and 1")
    stride_px = int(stride_px or max(1, tile_px // 2))
    groups = [paths] if bbox_lonlat is not None else [[p] for p in paths]
    tiles: list[np.ndarray] = []
    for gsd in [gsd_m, *[g for g in extra_gsd_m if g != gsd_m]]:
        if not gsd > 0:
            raise InputError(f"GSD {gsd} must be positive")
        for group in groups:
            class_map, grid = rasterize_array([Path(p) for p in group], bbox=bbox_lonlat, bbox_crs="EPSG:4326",
                                              crs=crs, gsd_m=gsd, rules=rules)
            got = _cut_tiles(class_map, tile_px, stride_px, min_mapped)
            log.info("%s: %dx%d px at %g m, %d tiles", ", ".join(Path(p).name for p in group), grid.width,
                     grid.height, gsd, len(got))
            tiles.extend(got)
    if not tiles:
        raise InputError(f"no {tile_px} px tile at {gsd_m} m is at least {min_mapped:.0%} mapped; use a larger or "
                         "better-mapped area, a coarser --gsd, a smaller tile or a lower min_mapped")
    return np.stack(tiles).astype(np.uint8)


def palette_rgb(class_map: np.ndarray, schema: Schema) -> np.ndarray:
    """(H, W, 3) uint8 image of a class map in the schema palette."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in schema.classes:
        lut[c.id] = c.color
    return lut[class_map]
