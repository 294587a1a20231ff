"""Burning classified features into a grid: class map and building heights.

Pure functions: a :class:`FeatureSet` and a :class:`Grid` in, a new ndarray
out. Pixel rule: a pixel takes a feature's value when its centre lies inside
the feature (rasterio's default, ``all_touched=False``); features are drawn in
priority order, so higher-priority classes end up on top. Memory: one array of
the grid's shape.
"""

from __future__ import annotations

import numpy as np
from rasterio import features as rio_features

from .features import FeatureSet
from .grid import Grid


def rasterize_classes(feats: FeatureSet, grid: Grid, fill: int = 0) -> np.ndarray:
    """Class ids (uint8, shape ``grid.shape_yx``); ``fill`` where nothing is drawn."""
    out = np.full(grid.shape_yx, fill, dtype=np.uint8)
    idx = feats.query(grid.bounds)
    if len(idx):
        shapes = zip(feats.geometries[idx], feats.class_ids[idx].tolist())
        rio_features.rasterize(shapes, out=out, transform=grid.transform)
    return out


def rasterize_heights(feats: FeatureSet, grid: Grid) -> np.ndarray:
    """Object heights above ground in metres (float32): building tops with their roofs, else 0.

    The same surface as :meth:`FeatureSet.object_heights` (see :func:`geogan.heights.rasterize_object_heights`).
    """
    from .heights import rasterize_object_heights

    return rasterize_object_heights(feats, grid)
