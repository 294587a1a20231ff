"""Shaped terrain in ``geogan render --model terrain``: the model's heights reshaped over the whole area.

A terrain model whose card says ``"height_reference": "chip mean"`` draws each tile's heights relative to that
tile's own mean, so a render's raw heights carry no relief larger than a tile, no class order, no flat water
and no drainage. When no ``--dem`` is given, :func:`shaped_terrain_dem` runs the model's tiles over the
generator grid once (the same tiles, noise and blending as the render itself), shapes the result with
:func:`geogan.terrain_relief.shape_terrain` on the whole grid at once, and hands it to the render as an
in-memory DEM, so ``height.tif`` (and hillshade, canopy and buildings on top) follow the shaped terrain
(lake shores are set 1 mm above the lake, so resampling onto the output grid keeps the water flat).
A card can turn this off with ``"shape_terrain": false`` (or on for another height model with ``true``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np


def shapes_terrain(card: dict) -> bool:
    """Whether a render reshapes this model's heights (card ``shape_terrain``, else tile-relative heights)."""
    if "height" not in card.get("outputs", ()):
        return False
    return bool(card.get("shape_terrain", card.get("height_reference") == "chip mean"))


def model_terrain_m(feats, grid, model, spec, seed: int, offset_rc: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(model class ids, blended model heights in metres)`` on ``grid`` (the generator grid)."""
    from .pipeline import blend_tile_rows, native_plan
    from .tiles import tile_rows

    plan = native_plan(grid, spec)
    raw = np.zeros(grid.shape_yx, dtype=np.float64)
    scale = float(model.card["height_scale_m"])
    for row0, strip in blend_tile_rows(feats, grid, model, spec, plan, first_row=0,
                                       stop_row=len(tile_rows(grid.shape_yx, spec)), seed=seed, offset_rc=offset_rc):
        raw[row0:row0 + strip.shape[1]] = strip[3] * scale
    return model.lut[feats.classes(grid)], raw


def terrain_classes(model_classes: np.ndarray, card: dict) -> np.ndarray:
    """Model class ids as :data:`geogan.training.terrain_chips.TERRAIN_CLASSES` ids (unknown names: grass)."""
    from .training.terrain_chips import TERRAIN_CLASSES

    names = list(card["classes"])
    lut = np.array([TERRAIN_CLASSES.index(n) if n in TERRAIN_CLASSES else TERRAIN_CLASSES.index("grass")
                    for n in names], dtype=np.uint8)
    return lut[np.asarray(model_classes)]


@contextmanager
def shaped_terrain_dem(feats, grid, model, spec, seed: int, offset_rc: tuple[int, int] = (0, 0)) -> Iterator[str]:
    """A ``/vsimem/`` GeoTIFF of the shaped terrain (metres, float32) on ``grid``, for :class:`DemSource`."""
    from rasterio.io import MemoryFile

    from .terrain_relief import settle_shores, shape_terrain, split_water

    classes, raw = model_terrain_m(feats, grid, model, spec, seed, offset_rc)
    terrain = terrain_classes(classes, model.card)
    z = shape_terrain(terrain, raw, float(model.card["gsd_m"]))
    z = settle_shores(z, split_water(terrain)[0]).astype(np.float32)
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                      crs=grid.crs.to_wkt(), transform=grid.transform) as ds:
            ds.write(z, 1)
            ds.update_tags(1, UNITTYPE="m")
        yield mem.name


@contextmanager
def terrain_dem(dem_path, feats, grid, model, spec, seed: int, offset_rc: tuple[int, int] = (0, 0)):
    """The DEM a render reads its terrain from: ``dem_path`` when given, else the shaped model terrain
    (:func:`shaped_terrain_dem`) for models that :func:`shapes_terrain`, else None (``feats``/``grid``: the
    generator's class source and grid)."""
    if dem_path is not None or not shapes_terrain(model.card):
        yield dem_path
        return
    with shaped_terrain_dem(feats, grid, model, spec, seed, offset_rc) as path:
        yield path
