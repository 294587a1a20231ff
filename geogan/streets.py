"""Join broken street pieces of a class map into a network (for dreamed maps).

A DCGAN that sees 32 px tiles draws streets as short dashes: it knows their width, direction and
spacing but not that they go on beyond the tile. :func:`join_streets` continues every dash along its
own direction: each 8-connected piece of the street class gets a principal axis (PCA of its pixels),
and from both ends of that axis a ray looks up to ``max_gap_px`` ahead (within ``cone_deg`` of the
axis) for another piece; the nearest one found is joined with a straight line of the street class.
Pieces that stay shorter than ``min_length_px`` and joined to nothing are given back to their
surroundings (GDAL's sieve), so specks do not read as streets.

Pure numpy on a uint8 class map; the joins depend only on the map, so the same map gives the same network.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["join_streets", "label_components"]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (int32 labels, 0 = off the mask, 1..n), n."""
    import rasterio.features
    from affine import Affine

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    shapes = [(geom, i + 1) for i, (geom, _) in enumerate(
        rasterio.features.shapes(m, mask=m.astype(bool), connectivity=8, transform=Affine.identity()))]
    if not shapes:
        return np.zeros(mask.shape, np.int32), 0
    labels = rasterio.features.rasterize(shapes, out_shape=mask.shape, transform=Affine.identity(), fill=0,
                                         dtype="int32")
    labels[~mask] = 0  # a polygon of 8-connected pixels may cover a corner-touching hole pixel
    return labels, len(shapes)


def _ends(ys: np.ndarray, xs: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The two ends of a piece along its principal axis: (y, x, dy, dx) with (dy, dx) pointing outwards."""
    cy, cx = ys.mean(), xs.mean()
    if len(ys) == 1:
        return []
    cov = np.cov(np.stack([ys - cy, xs - cx]))
    vals, vecs = np.linalg.eigh(cov)
    dy, dx = vecs[:, int(np.argmax(vals))]
    t = (ys - cy) * dy + (xs - cx) * dx
    lo, hi = int(np.argmin(t)), int(np.argmax(t))
    return [(float(ys[lo]), float(xs[lo]), -dy, -dx), (float(ys[hi]), float(xs[hi]), dy, dx)]


def _line(y0: float, x0: float, y1: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a straight line between two points, 4-connected (no diagonal gaps a street could leak through)."""
    n = int(max(abs(y1 - y0), abs(x1 - x0))) * 2 + 1
    t = np.linspace(0.0, 1.0, n)
    ys = np.rint(y0 + (y1 - y0) * t).astype(int)
    xs = np.rint(x0 + (x1 - x0) * t).astype(int)
    # where a step moves diagonally, also set the pixel beside it
    diag = (np.diff(ys) != 0) & (np.diff(xs) != 0)
    return np.concatenate([ys, ys[1:][diag]]), np.concatenate([xs, xs[:-1][diag]])


def join_streets(class_map: np.ndarray, street_class: int, *, max_gap_px: int = 10, cone_deg: float = 20.0,
                 min_length_px: int = 6, width_px: int = 1, rounds: int = 2) -> np.ndarray:
    """A copy of ``class_map`` whose ``street_class`` pieces are joined along their own direction.

    Parameters
    ----------
    class_map : uint8 (H, W) class ids
    street_class : the class id to join (e.g. road)
    max_gap_px : the longest gap a join bridges
    cone_deg : how far from a piece's axis a join may turn (rays at 0, +-cone/2, +-cone)
    min_length_px : pieces whose longer side is shorter than this, and which nothing joined, are
        removed (merged into their largest neighbour)
    width_px : width of the drawn joins (1 or more)
    rounds : join passes (a piece grown by one pass may reach another in the next)
    """
    out = np.array(class_map, dtype=np.uint8, copy=True)
    h, w = out.shape
    angles = [math.radians(a) for a in (0.0, cone_deg / 2, -cone_deg / 2, cone_deg, -cone_deg)]
    steps = np.arange(2, max_gap_px + 2, dtype=np.float64)
    for _ in range(max(1, rounds)):
        labels, n = label_components(out == street_class)
        if n < 2:
            break
        ys_all, xs_all = np.nonzero(labels)
        order = np.argsort(labels[ys_all, xs_all], kind="stable")
        ys_all, xs_all = ys_all[order], xs_all[order]
        bounds = np.searchsorted(labels[ys_all, xs_all], np.arange(1, n + 2))
        joins = []
        for k in range(1, n + 1):
            ys, xs = ys_all[bounds[k - 1]:bounds[k]], xs_all[bounds[k - 1]:bounds[k]]
            for y, x, dy, dx in _ends(ys, xs):
                best = None
                for a in angles:
                    ry = dy * math.cos(a) - dx * math.sin(a)
                    rx = dy * math.sin(a) + dx * math.cos(a)
                    py = np.rint(y + ry * steps).astype(int)
                    px = np.rint(x + rx * steps).astype(int)
                    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
                    if not inside.any():
                        continue
                    stop = np.argmin(inside) if not inside.all() else len(py)
                    hit = labels[py[:stop], px[:stop]]
                    other = np.nonzero((hit != 0) & (hit != k))[0]
                    if len(other) and (best is None or other[0] < best[0]):
                        best = (other[0], py[other[0]], px[other[0]])
                if best is not None:
                    joins.append((y, x, best[1], best[2]))
        if not joins:
            break
        for y0, x0, y1, x1 in joins:
            ly, lx = _line(y0, x0, y1, x1)
            for oy in range(width_px):
                for ox in range(width_px):
                    yy, xx = np.clip(ly + oy - width_px // 2, 0, h - 1), np.clip(lx + ox - width_px // 2, 0, w - 1)
                    out[yy, xx] = street_class
    return _drop_stubs(out, street_class, min_length_px)


def _drop_stubs(class_map: np.ndarray, street_class: int, min_length_px: int) -> np.ndarray:
    """Give street pieces whose bounding box is under ``min_length_px`` on both sides to their surroundings."""
    if min_length_px <= 1:
        return class_map
    import rasterio.features

    labels, n = label_components(class_map == street_class)
    if n == 0:
        return class_map
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    extent = np.zeros(n + 1, np.int64)
    for coords in (ys, xs):
        lo = np.full(n + 1, np.iinfo(np.int64).max)
        hi = np.full(n + 1, -1)
        np.minimum.at(lo, lab, coords)
        np.maximum.at(hi, lab, coords)
        extent = np.maximum(extent, hi - lo + 1)
    short = extent < min_length_px
    short[0] = False
    stub = short[labels]
    if not stub.any():
        return class_map
    # fill the stubs from their surroundings: sieve away patches of a marker value no bigger than the stubs
    marker = np.array(class_map, copy=True)
    sizes = np.bincount(lab, minlength=n + 1)
    size_limit = int(sizes[short].max()) + 1
    marker[stub] = 255
    filled = rasterio.features.sieve(marker, size_limit, connectivity=8)
    out = np.array(class_map, copy=True)
    out[stub] = filled[stub]
    left = stub & (out == 255)  # a stub no neighbour could take (a map of nothing else): keep it
    out[left] = street_class
    return out
