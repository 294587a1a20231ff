"""Burning classified features into a grid: class map and building heights.

Pure functions: a :class:`FeatureSet` and a :class:`Grid` in, a new ndarray
out. Pixel rule: a pixel takes a feature's value when its centre lies inside
the feature (rasterio's default, ``all_touched=False``); features are drawn in
priority order, so higher-priority classes end up on top. Memory: one array of
the grid's shape.
"""

from __future__ import annotations

import warnings

import numpy as np
import shapely
from rasterio import features as rio_features
from rasterio.errors import NotGeoreferencedWarning

from .features import FeatureSet
from .grid import Grid

# rasterio.features.rasterize now and then warns that its in-memory target "has no geotransform" when
# several threads rasterize at once (the render does: model inputs and output strips), although every
# call here passes the grid's transform and the pixels come out right (a known, unfixed rasterio/GDAL
# error-state race: rasterio/rasterio#2497, opendatacube/odc-geo#131). Only that module's warning of
# that kind is hidden.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.features")


CLIP_MARGIN_PX = 2


def burnable(geoms: np.ndarray, values, grid: Grid) -> list[tuple[dict, int | float]]:
    """``(polygon mapping, value)`` pairs clipped to the grid (plus a 2 px margin), empty ones left out
    (:func:`polygon_mappings`).

    GDAL fills a polygon scanline by scanline, visiting all of its edges on every line: a long
    buffered road costs its whole vertex count on each row of a strip. Clipped to the window it
    costs only its edges there. Inside the window the clipped and the whole shape have the same
    edges, so the same pixels burn.
    """
    left, bottom, right, top = grid.bounds
    mx, my = CLIP_MARGIN_PX * abs(grid.transform.a), CLIP_MARGIN_PX * abs(grid.transform.e)
    clipped = shapely.clip_by_rect(geoms, left - mx, bottom - my, right + mx, top + my)
    return polygon_mappings(clipped, values)


def polygon_mappings(geoms: np.ndarray, values) -> list[tuple[dict, int | float]]:
    """``(GeoJSON-like Polygon mapping, value)`` for each polygon of ``geoms`` (multi-polygons and
    collections split into their polygons, in order; empty and non-polygonal parts left out).

    What rasterio burns, built with a few vectorised shapely calls: shapely's ``__geo_interface__``
    walks every vertex in Python and made up 60 % of a model-input band's rasterizing (1.3 of 2.2 ms
    for the sample town's 128 shapes), all of it holding the GIL the generator threads wait for.
    """
    values = list(values)
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    parts, part_of = parts[keep], part_of[keep]
    if not len(parts):
        return []
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    coord_ends = np.cumsum(np.bincount(coord_of, minlength=len(rings))).tolist()
    ring_ends = np.cumsum(np.bincount(ring_of, minlength=len(parts))).tolist()
    flat = coords.tolist()
    ring_coords = [flat[a:b] for a, b in zip([0, *coord_ends[:-1]], coord_ends)]
    return [({"type": "Polygon", "coordinates": ring_coords[a:b]}, values[k])
            for a, b, k in zip([0, *ring_ends[:-1]], ring_ends, part_of.tolist())]


def rasterize_classes(feats: FeatureSet, grid: Grid, fill: int = 0) -> np.ndarray:
    """Class ids (uint8, shape ``grid.shape_yx``); ``fill`` where nothing is drawn."""
    out = np.full(grid.shape_yx, fill, dtype=np.uint8)
    idx = feats.query(grid.bounds)
    shapes = burnable(feats.geometries[idx], feats.class_ids[idx].tolist(), grid) if len(idx) else []
    if shapes:
        rio_features.rasterize(shapes, out=out, transform=grid.transform)
    return out


def rasterize_heights(feats: FeatureSet, grid: Grid) -> np.ndarray:
    """Object heights above ground in metres (float32): building tops with their roofs, else 0.

    The same surface as :meth:`FeatureSet.object_heights` (see :func:`geogan.heights.rasterize_object_heights`).
    """
    from .heights import rasterize_object_heights

    return rasterize_object_heights(feats, grid)
