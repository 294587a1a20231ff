"""Statistics of dreamed class maps that make mode collapse and lost streets visible in numbers:
class fractions, diversity, and how much of the road network is long lines."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import shapely
import shapely.geometry

def line_stats(class_map: np.ndarray, classes: Sequence[int], long_px: int) -> dict:
    """How much of a class map's ``classes`` (e.g. road and path) is a network of long lines.

    ``fraction``: share of pixels in those classes; ``long_share``: share of those pixels that lie in
    8-connected components at least ``long_px`` long (the larger side of their bounding box), i.e.
    streets rather than specks or stubs; ``components``: number of components per 1,000 px.
    Components are GDAL's polygons of the mask (``rasterio.features.shapes``, 8-connected): in pixel
    units a polygon's area is its pixel count and its bounds are the component's bounding box.
    """
    from rasterio import features as rio_features

    m = np.isin(np.asarray(class_map), list(classes))
    n = int(m.sum())
    if n == 0:
        return {"fraction": 0.0, "long_share": 0.0, "components": 0.0}
    polys = np.array([shapely.geometry.shape(g) for g, _ in
                      rio_features.shapes(m.astype(np.uint8), mask=m, connectivity=8)], dtype=object)
    bounds = shapely.bounds(polys)
    extent_px = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    long_n = shapely.area(polys)[extent_px >= long_px].sum()
    return {"fraction": round(n / m.size, 4), "long_share": round(float(long_n / n), 4),
            "components": round(1000.0 * len(polys) / m.size, 3)}


#: Class ids of the street network (road, path) in geogan's schema, for :func:`line_stats`.
STREET_CLASSES = (2, 3)


def dream_tile_stats(tiles: np.ndarray, n_classes: int) -> dict:
    """Statistics of a set of class tiles ``(N, T, T)`` that make mode collapse visible.

    ``mean`` / ``std``: per class, the mean and the spread (standard deviation across tiles) of the
    fraction of a tile's pixels in that class. ``diversity``: mean pairwise pixel disagreement (the
    fraction of pixels whose classes differ) over all pairs of distinct tiles. ``nn_disagreement``:
    mean over tiles of the disagreement with the most similar other tile (near 0 when tiles repeat).
    ``composition_diversity``: mean pairwise total-variation distance between the tiles' class-fraction
    vectors (insensitive to pixel noise, which inflates ``diversity``). ``edge_rate``: fraction of
    4-neighbour pixel pairs whose classes differ (fragmentation; noisy tiles score high).
    A collapsed generator has a far lower diversity, spread and nearest-neighbour disagreement than
    the real tiles. ``streets`` / ``roads``: :func:`line_stats` of road + path / road alone within the
    tiles (``long_share``: share of those pixels in components at least half a tile long), so
    specks and stubs instead of streets show up in numbers.
    """
    tiles = np.asarray(tiles)
    n = len(tiles)
    flat = tiles.reshape(n, -1)
    frac = np.stack([(flat == k).mean(1) for k in range(n_classes)], 1) if n else np.zeros((0, n_classes))
    dis = np.zeros((n, n))
    for i in range(n):
        dis[i] = (flat != flat[i]).mean(1)
    off = ~np.eye(n, dtype=bool)
    nn = np.where(off, dis, np.inf).min(1) if n > 1 else np.zeros(n)
    tv = np.zeros((n, n))
    for i in range(n):
        tv[i] = 0.5 * np.abs(frac - frac[i]).sum(1)
    edges = 0.0
    if n and tiles.shape[1] > 1:
        edges = 0.5 * float((tiles[:, 1:] != tiles[:, :-1]).mean() + (tiles[:, :, 1:] != tiles[:, :, :-1]).mean())
    lines = {}
    if n and tiles.ndim == 3:
        t = tiles.shape[1]
        cols = int(math.ceil(math.sqrt(n)))
        sheet = np.full((cols * (t + 1), cols * (t + 1)), 255, dtype=np.uint8)  # tiles apart by a 1 px gap
        for i, tile in enumerate(tiles):
            r, c = divmod(i, cols)
            sheet[r * (t + 1):r * (t + 1) + t, c * (t + 1):c * (t + 1) + tile.shape[1]] = tile
        for key, classes in (("streets", STREET_CLASSES), ("roads", STREET_CLASSES[:1])):
            st = line_stats(sheet, classes, max(2, t // 2))
            st["fraction"] = round(float(np.isin(tiles, classes).mean()), 4)
            st["components"] = round(st["components"] * sheet.size / tiles.size, 3)
            lines[key] = st
    return {"n": n, "mean": [round(float(v), 4) for v in frac.mean(0)],
            "std": [round(float(v), 4) for v in frac.std(0)],
            "diversity": round(float(dis[off].mean()), 4) if n > 1 else 0.0,
            "nn_disagreement": round(float(nn.mean()), 4),
            "composition_diversity": round(float(tv[off].mean()), 4) if n > 1 else 0.0,
            "edge_rate": round(edges, 4), **lines}


def stitched_stats(maps: Sequence[np.ndarray], n_classes: int, long_px: int) -> dict:
    """Class fractions, :func:`line_stats` of streets (road + path) and roads (lines at least
    ``long_px`` long) and the neighbour change rate of stitched dream maps."""
    counts = np.bincount(np.concatenate([m.ravel() for m in maps]), minlength=256)[:n_classes]
    lines = {}
    for key, cl in (("streets", STREET_CLASSES), ("roads", STREET_CLASSES[:1])):
        per_map = [line_stats(m, cl, long_px) for m in maps]  # once per map, not once per statistic
        lines[key] = {k: round(float(np.mean([st[k] for st in per_map])), 4)
                      for k in ("fraction", "long_share", "components")}
    return {"fractions": [round(float(v), 4) for v in counts / sum(m.size for m in maps)], **lines,
            "change_rate": round(float(np.mean([0.5 * ((m[1:] != m[:-1]).mean() + (m[:, 1:] != m[:, :-1]).mean())
                                                for m in maps])), 4)}
