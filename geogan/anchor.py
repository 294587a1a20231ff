"""World anchoring: the canonical grid the generator runs on, whatever grid the user asked for.

A render's look must depend on the place, not on the request. The generator therefore never runs on the
output grid: it runs on a *canonical* grid, a window of one world-wide pixel lattice per UTM zone,

* in the UTM zone of the output grid's centre (UPS north, EPSG:32661, above 84 N; UPS south, EPSG:32761,
  below 80 S), the zone given by the longitude alone (no Norway/Svalbard exceptions);
* with square pixels of the model's native GSD in metres (``res_m``);
* whose pixel ``(row, col)`` is world pixel ``(row + offset_row, col + offset_col)``, world pixel
  ``(r, c)`` covering eastings ``c * res .. (c + 1) * res`` and northings ``-(r + 1) * res .. -r * res``;
* with tiles starting at multiples of the tile stride in world pixels, and exactly the tiles that touch a
  pixel the warp reads (the output grid's bounds, transformed with densified edges, plus the resampling
  kernel's margin): every such pixel is blended from all of its tiles, the same in any render.

Noise, tile orientations and tile inputs are keyed by world pixel position (:func:`world_offset`), so two
renders of overlapping areas in one zone compute the same canonical pixels where they overlap; the
canonical strips are then warped onto the output grid (:mod:`geogan.warp`). Pure functions, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyproj
from affine import Affine

from .grid import Grid

UPS_NORTH = "EPSG:32661"
UPS_SOUTH = "EPSG:32761"
UTM_NORTH_LIMIT_DEG = 84.0  # UTM is defined from 80 S to 84 N; UPS covers the poles beyond
UTM_SOUTH_LIMIT_DEG = -80.0
WARP_MARGIN_PX = 3  # canonical pixels read beyond an output area's transformed edges (resampling kernel)
DENSIFY_PTS = 21  # points per grid edge when transforming bounds


@dataclass(frozen=True)
class CanonicalFrame:
    """The canonical grid of a render and the world pixel position of its (0, 0) pixel."""

    grid: Grid
    offset_rc: tuple[int, int]


def canonical_crs(lon: float, lat: float) -> pyproj.CRS:
    """The CRS of the canonical grid at (lon, lat): its UTM zone, or UPS beyond 84 N / 80 S."""
    if lat > UTM_NORTH_LIMIT_DEG:
        return pyproj.CRS.from_user_input(UPS_NORTH)
    if lat < UTM_SOUTH_LIMIT_DEG:
        return pyproj.CRS.from_user_input(UPS_SOUTH)
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def world_offset(grid: Grid) -> tuple[int, int]:
    """World pixel position ``(round(-top / res_y), round(left / res_x))`` of ``grid``'s (0, 0) pixel.

    Whole numbers for a canonical grid (its origin lies on the lattice); for any other grid the nearest
    ones, which key position-dependent texture (the canopy) to the place for grids on one lattice.
    """
    rx, ry = grid.res_xy
    left, top = grid.transform.c, grid.transform.f
    return int(round(-top / ry)), int(round(left / rx))


def edge_points(grid: Grid, n: int = DENSIFY_PTS) -> tuple[np.ndarray, np.ndarray]:
    """CRS coordinates (x, y) of ``n`` points along each of ``grid``'s four edges (pixel corners)."""
    t = np.linspace(0.0, 1.0, n)
    h, w = grid.height, grid.width
    rows = np.concatenate([np.zeros(n), np.full(n, float(h)), t * h, t * h])
    cols = np.concatenate([t * w, t * w, np.zeros(n), np.full(n, float(w))])
    xs, ys = grid.transform * (cols, rows)
    return np.asarray(xs, float), np.asarray(ys, float)


def world_pixel_span(grid: Grid, crs: pyproj.CRS, res_m: float, margin_px: int) -> tuple[int, int, int, int]:
    """World pixels ``(row_lo, row_hi, col_lo, col_hi)`` (half-open) of the lattice of ``res_m`` in ``crs``
    that cover ``grid`` (edges densified) plus ``margin_px`` on every side."""
    xs, ys = edge_points(grid)
    if grid.crs != crs:
        xs, ys = pyproj.Transformer.from_crs(grid.crs, crs, always_xy=True).transform(xs, ys)
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        from .errors import GridError
        raise GridError(f"the output grid cannot be placed in {crs.to_string()}, the frame the model renders in; "
                        "choose a smaller area or one away from the poles' CRS limits")
    cols, rows = xs / res_m, -ys / res_m
    return (int(math.floor(rows.min())) - margin_px, int(math.ceil(rows.max())) + margin_px,
            int(math.floor(cols.min())) - margin_px, int(math.ceil(cols.max())) + margin_px)


def tiles_touching(lo: int, hi: int, tile_px: int, stride_px: int) -> tuple[int, int]:
    """First and last start (multiples of ``stride_px``) of the tiles of ``tile_px`` that touch pixels
    ``lo .. hi - 1``."""
    first = -((-(lo - tile_px + 1)) // stride_px) * stride_px  # ceil to a multiple of the stride
    last = ((hi - 1) // stride_px) * stride_px
    return first, max(first, last)


def canonical_grid(output: Grid, res_m: float, tile_px: int, stride_px: int,
                   margin_px: int = WARP_MARGIN_PX) -> CanonicalFrame:
    """The canonical grid for ``output``: :func:`canonical_crs` of its centre, square ``res_m`` pixels,
    exactly the stride-aligned tiles of ``tile_px`` that touch the output's pixels plus ``margin_px``."""
    crs = canonical_crs(*output.center_lonlat())
    row_lo, row_hi, col_lo, col_hi = world_pixel_span(output, crs, res_m, margin_px)
    r0, r1 = tiles_touching(row_lo, row_hi, tile_px, stride_px)
    c0, c1 = tiles_touching(col_lo, col_hi, tile_px, stride_px)
    transform = Affine(res_m, 0.0, c0 * res_m, 0.0, -res_m, -r0 * res_m)
    return CanonicalFrame(Grid(crs, transform, (r1 - r0 + tile_px, c1 - c0 + tile_px)), (r0, c0))
