"""Terrain: a DEM on the output grid, objects and canopy on top of it, hillshade.

``height.tif`` becomes a surface model: terrain elevation from a DEM plus the
height of what stands on it (buildings from OSM tags, a vegetation canopy on
woodland). Everything here works on one window of the output grid at a time
so :func:`geogan.pipeline.render_grid` can stream it strip by strip.

Vertical datum and units
    Heights stay in the DEM's vertical datum and unit: nothing converts
    ellipsoidal to orthometric heights or feet to metres (a DEM whose band
    unit is feet is reported by :func:`check_dem_overlaps`). Object and
    canopy heights (metres above local ground) are added to the DEM value.
    A DEM's per-band scale/offset, if set, is applied.

DEM nodata
    Holes are filled in the DEM's own pixel space, before reprojection, with
    GDAL's FillNodata (inverse-distance interpolation from the hole's edge,
    ``rasterio.fill.fillnodata``, no smoothing) up to ``fill_distance_px``
    DEM pixels from valid data; the source window is read with that much
    margin so a filled value does not depend on where a strip starts (strips
    are seamless). Larger holes, and grid pixels outside the DEM, stay NaN
    (written as nodata). :class:`DemSource` counts both and
    :meth:`DemSource.warnings` says how many.

Bridges and tunnels
    The terrain is the DEM, untouched by the class map: roads add no height,
    so a tunnel does not carve the terrain and a bridge deck is not raised
    (a bridge pixel shows the DEM value; a DSM-like DEM may already hold it).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import pyproj
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.fill import fillnodata
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from .classes import Schema
from .errors import InputError
from .grid import Grid
from .noise import GOLD, M1, M2, splitmix64

log = logging.getLogger("geogan")

NODATA = -9999.0
FILL_DISTANCE_PX = 100          # GDAL FillNodata's default search distance, in DEM pixels
MIN_COVERAGE_WARN = 0.999       # warn when the DEM covers less of the grid than this fraction
_MARGIN_PX = 2                  # extra source pixels around a window for the bilinear kernel

# --------------------------------------------------------------------------- DEM


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@lru_cache(maxsize=32)
def _rio_crs(wkt: str) -> RioCRS:
    return RioCRS.from_wkt(wkt)


def _grid_crs(grid: Grid) -> RioCRS:
    return _rio_crs(grid.crs.to_wkt())


def _open(dem_path: str | os.PathLike) -> rasterio.io.DatasetReader:
    """Open a DEM or raise a one-line InputError (missing, not a raster, no CRS)."""
    path = Path(dem_path)
    if not path.exists() and not str(dem_path).startswith("/vsi"):
        raise InputError(f"DEM '{dem_path}' does not exist; give the path to a GeoTIFF or VRT elevation raster")
    try:
        ds = rasterio.open(dem_path)
    except (RasterioError, OSError) as err:
        raise InputError(f"DEM '{dem_path}' is not a raster GDAL can read ({_one_line(err)}); "
                         "give a GeoTIFF or VRT elevation raster") from None
    if ds.crs is None or not ds.crs.to_wkt():
        ds.close()
        raise InputError(f"DEM '{dem_path}' has no CRS; assign the right one, e.g. "
                         f"gdal_edit.py -a_srs EPSG:32635 '{dem_path}'")
    if ds.transform.is_identity:
        ds.close()
        raise InputError(f"DEM '{dem_path}' has no georeferencing (identity transform); assign it with "
                         f"gdal_edit.py -a_ullr ULX ULY LRX LRY '{dem_path}'")
    return ds


@dataclass
class DemCheck:
    """What :func:`check_dem_overlaps` found: covered fraction of the grid and warnings."""

    coverage: float
    warnings: list[str] = field(default_factory=list)


def _footprint_in_grid_crs(ds, grid: Grid):
    """The DEM's extent as a polygon in the grid CRS (densified edges), or None if it cannot be projected."""
    from shapely.geometry import Polygon, box

    left, bottom, right, top = ds.bounds
    n = 21
    xs = np.concatenate([np.linspace(left, right, n), np.full(n, right), np.linspace(right, left, n), np.full(n, left)])
    ys = np.concatenate([np.full(n, top), np.linspace(top, bottom, n), np.full(n, bottom), np.linspace(bottom, top, n)])
    t = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(ds.crs.to_wkt()), grid.crs, always_xy=True)
    with np.errstate(all="ignore"):
        gx, gy = t.transform(xs, ys)
    gx, gy = np.asarray(gx), np.asarray(gy)
    ok = np.isfinite(gx) & np.isfinite(gy)
    if ok.sum() < 3:
        # The DEM lies (mostly) outside where the grid CRS is defined: fall back to the grid in DEM space.
        return None
    poly = Polygon(np.column_stack([gx[ok], gy[ok]])).buffer(0)
    return poly if not poly.is_empty else box(0, 0, 0, 0)


def check_dem_overlaps(dem_path: str | os.PathLike, grid: Grid, min_coverage: float = MIN_COVERAGE_WARN) -> DemCheck:
    """Validate a DEM for ``grid`` before rendering.

    Raises a one-line :class:`InputError` when the file is missing, is not a
    raster, has no CRS, or does not overlap the grid at all. Returns the
    covered fraction of the grid's extent and warnings (also logged) when
    it covers less than ``min_coverage`` (the rest of height.tif will be
    nodata), its band unit says feet (not converted) or it has several bands.
    """
    from shapely.geometry import box

    ds = _open(dem_path)
    try:
        grid_box = box(*grid.bounds)
        foot = _footprint_in_grid_crs(ds, grid)
        if foot is None:
            coverage = 0.0
            try:
                gb = transform_bounds(_grid_crs(grid), ds.crs, *grid.bounds, densify_pts=21)
                if all(math.isfinite(v) for v in gb):
                    inter = box(*gb).intersection(box(*ds.bounds))
                    coverage = inter.area / max(box(*gb).area, 1e-300)
            except Exception:  # noqa: BLE001 - any projection failure means "no overlap"
                coverage = 0.0
        else:
            coverage = foot.intersection(grid_box).area / max(grid_box.area, 1e-300)
        if coverage <= 0.0:
            dl, db, dr, dt = _lonlat_bounds(ds.crs, ds.bounds)
            gl, gb_, gr, gt = _lonlat_bounds(_grid_crs(grid), grid.bounds)
            raise InputError(f"DEM '{dem_path}' does not overlap the output area (DEM lon/lat "
                             f"{dl:.4f},{db:.4f},{dr:.4f},{dt:.4f}; area {gl:.4f},{gb_:.4f},{gr:.4f},{gt:.4f}); "
                             "give a DEM that covers the bbox, or check the DEM's CRS")
        warnings_: list[str] = []
        if coverage < min_coverage:
            warnings_.append(f"DEM '{dem_path}' covers only {100 * coverage:.1f}% of the output area; "
                             "height.tif is nodata where it has no terrain")
        unit = (ds.units[0] if ds.units else "") or ""
        if unit.lower() in ("ft", "foot", "feet", "us survey foot", "ft_us"):
            warnings_.append(f"DEM '{dem_path}' heights are in {unit}; they are not converted to metres")
        if ds.count > 1:
            warnings_.append(f"DEM '{dem_path}' has {ds.count} bands; band 1 is used as elevation")
        for w in warnings_:
            log.warning(w)
        return DemCheck(float(min(coverage, 1.0)), warnings_)
    finally:
        ds.close()


def _lonlat_bounds(crs: RioCRS, bounds) -> tuple[float, float, float, float]:
    try:
        out = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
        if all(math.isfinite(v) for v in out):
            return tuple(float(v) for v in out)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001
        pass
    return (math.nan,) * 4  # type: ignore[return-value]


class DemSource:
    """A DEM opened once and read window by window onto output sub-grids.

    ``read(grid)`` returns float32 ``grid.shape_yx`` elevations (NaN where the
    DEM has no data even after hole filling). Pass the full output grid as
    ``reference_grid`` so every strip uses the same DEM decimation (a DEM
    much finer than the grid is read block-averaged to 1..2 samples per
    output pixel); reads of overlapping windows then agree on the overlap.
    Use as a context manager, or
    call :meth:`close`. Counters ``filled_px`` (DEM pixels filled, summed over
    reads: strips overlap by the fill margin, so it can count a pixel twice)
    and ``nodata_px`` (output pixels left NaN) feed :meth:`warnings`.
    """

    def __init__(self, dem_path: str | os.PathLike, fill_distance_px: int = FILL_DISTANCE_PX,
                 reference_grid: Grid | None = None):
        self.path = str(dem_path)
        self.fill_distance_px = int(fill_distance_px)
        self._ds = _open(dem_path)
        # One decimation factor for the whole output (from the full grid) keeps strips seamless.
        self._factor = self._decimation(reference_grid) if reference_grid is not None else None
        self.crs = self._ds.crs
        self._scale = float(self._ds.scales[0]) if self._ds.scales else 1.0
        self._offset = float(self._ds.offsets[0]) if self._ds.offsets else 0.0
        self.filled_px = 0
        self.nodata_px = 0
        self.read_px = 0

    # -- context manager
    def __enter__(self) -> "DemSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._ds is not None and not self._ds.closed:
            self._ds.close()

    # -- reading
    def _grid_window(self, grid: Grid) -> Window | None:
        """The fractional DEM window covering ``grid``'s bounds, or None outside the DEM CRS's domain."""
        try:
            b = transform_bounds(_grid_crs(grid), self._ds.crs, *grid.bounds, densify_pts=21)
        except Exception:  # noqa: BLE001 - outside the DEM CRS's domain
            return None
        if not all(math.isfinite(v) for v in b):
            return None
        return from_bounds(*b, transform=self._ds.transform)

    def _decimation(self, grid: Grid) -> int:
        """DEM pixels averaged into one along each axis: the DEM is read at 1..2 samples per output pixel.

        Bounds memory for a DEM much finer than the grid and keeps the bilinear warp from aliasing
        (the warp runs with a fixed kernel, XSCALE=YSCALE=1, so its result never depends on the window).
        """
        win = self._grid_window(grid)
        if win is None:
            return 1
        src_px_per_dst = min(win.width / max(grid.width, 1), win.height / max(grid.height, 1))
        return max(1, int(src_px_per_dst))

    def _source_window(self, grid: Grid) -> tuple[Window, int] | None:
        """Integer DEM window (with margins) covering ``grid`` and the decimation factor, or None."""
        ds = self._ds
        win = self._grid_window(grid)
        if win is None:
            return None
        factor = self._factor if self._factor is not None else self._decimation(grid)
        margin = (self.fill_distance_px + _MARGIN_PX) * factor
        c0 = math.floor(win.col_off) - margin
        r0 = math.floor(win.row_off) - margin
        c1 = math.ceil(win.col_off + win.width) + margin
        r1 = math.ceil(win.row_off + win.height) + margin
        # Snap to the decimation lattice so averaged blocks line up between strips.
        c0, r0 = max(0, c0 // factor * factor), max(0, r0 // factor * factor)
        c1, r1 = min(ds.width, c1), min(ds.height, r1)
        if c1 <= c0 or r1 <= r0:
            return None
        if factor > 1:  # whole blocks only (drops < factor pixels at the DEM's own right/bottom edge)
            c1 = c0 + max(1, (c1 - c0) // factor) * factor if c1 - c0 >= factor else c1
            r1 = r0 + max(1, (r1 - r0) // factor) * factor if r1 - r0 >= factor else r1
        return Window(c0, r0, c1 - c0, r1 - r0), factor

    def read(self, grid: Grid) -> np.ndarray:
        """DEM elevations resampled (bilinear) onto ``grid``: float32, NaN where no data."""
        out = np.full(grid.shape_yx, np.nan, dtype=np.float32)
        found = self._source_window(grid)
        if found is None:
            self.nodata_px += out.size
            return out
        win, factor = found
        ds = self._ds
        if factor > 1:
            shape = (max(1, round(win.height / factor)), max(1, round(win.width / factor)))
            arr = ds.read(1, window=win, out_shape=shape, masked=True, resampling=Resampling.average)
        else:
            arr = ds.read(1, window=win, masked=True)
        src_transform = (ds.transform @ Affine.translation(win.col_off, win.row_off)
                         @ Affine.scale(win.width / arr.shape[1], win.height / arr.shape[0]))
        data = np.asarray(arr.data, dtype=np.float32)
        valid = ~np.ma.getmaskarray(arr) & np.isfinite(data)
        if self._scale != 1.0 or self._offset != 0.0:
            data = data * np.float32(self._scale) + np.float32(self._offset)
        self.read_px += data.size
        holes = int(valid.size - np.count_nonzero(valid))
        data = np.where(valid, data, np.float32(np.nan)).astype(np.float32)
        if holes and valid.any():
            # GDAL FillNodata reads only valid pixels and leaves those it cannot reach as they are (NaN).
            data = fillnodata(data, mask=valid.astype(np.uint8), max_search_distance=float(self.fill_distance_px),
                              smoothing_iterations=0).astype(np.float32)
            self.filled_px += int(holes - np.count_nonzero(np.isnan(data)))
        # XSCALE/YSCALE=1: plain bilinear; GDAL would otherwise widen the kernel by a per-chunk
        # estimate of the scale, which differs between strips and leaves seams.
        reproject(data, out, src_transform=src_transform, src_crs=ds.crs, src_nodata=np.nan,
                  dst_transform=grid.transform, dst_crs=_grid_crs(grid), dst_nodata=np.nan,
                  resampling=Resampling.bilinear, init_dest_nodata=True, XSCALE=1, YSCALE=1)
        self.nodata_px += int(np.count_nonzero(np.isnan(out)))
        return out

    def sample(self, x: np.ndarray, y: np.ndarray, crs, block_px: int = 512) -> np.ndarray:
        """DEM values (float64, scale/offset applied) at points ``x``, ``y`` in ``crs``: bilinear between
        the DEM's own pixel centres (clamped at its edges), NaN outside the DEM or next to a nodata pixel.

        Reads one block of ``block_px`` DEM pixels (plus a 1-pixel border) per block the points fall in;
        the result depends only on the DEM and the points.
        """
        ds = self._ds
        x = np.asarray(x, dtype=np.float64)
        out = np.full(len(x), np.nan)
        if not len(x):
            return out
        t = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(crs), pyproj.CRS.from_wkt(ds.crs.to_wkt()),
                                        always_xy=True)
        dx, dy = t.transform(x, np.asarray(y, dtype=np.float64))
        col, row = ~ds.transform * (np.asarray(dx), np.asarray(dy))
        inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col <= ds.width) & (row >= 0) & (row <= ds.height)
        c = np.clip(np.asarray(col) - 0.5, 0, ds.width - 1)
        r = np.clip(np.asarray(row) - 0.5, 0, ds.height - 1)
        keys = (r.astype(np.int64) // block_px) * (ds.width // block_px + 1) + c.astype(np.int64) // block_px
        for key in np.unique(keys[inside]):
            pick = np.flatnonzero(inside & (keys == key))
            out[pick] = self._bilinear_block(r[pick], c[pick], block_px)
        return out * self._scale + self._offset

    def _bilinear_block(self, r: np.ndarray, c: np.ndarray, block_px: int) -> np.ndarray:
        """Bilinear values at fractional pixel-centre positions ``r``, ``c`` that share one block."""
        ds = self._ds
        ri = np.minimum(r.astype(np.int64), max(ds.height - 2, 0))  # the upper-left of each 2x2 neighbourhood
        ci = np.minimum(c.astype(np.int64), max(ds.width - 2, 0))
        r0, c0 = int(ri.min()), int(ci.min())
        r1, c1 = min(ds.height, int(ri.max()) + 2), min(ds.width, int(ci.max()) + 2)
        arr = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
        data = np.where(np.ma.getmaskarray(arr), np.nan, np.asarray(arr.data, dtype=np.float64))
        fr, fc = np.clip(r - ri, 0, 1), np.clip(c - ci, 0, 1)
        ri, ci = ri - r0, ci - c0
        ri1, ci1 = np.minimum(ri + 1, data.shape[0] - 1), np.minimum(ci + 1, data.shape[1] - 1)
        top = data[ri, ci] * (1 - fc) + data[ri, ci1] * fc
        bottom = data[ri1, ci] * (1 - fc) + data[ri1, ci1] * fc
        return top * (1 - fr) + bottom * fr

    def warnings(self) -> list[str]:
        """One-line warnings about filled holes and uncovered pixels (empty when all is well)."""
        msgs = []
        if self.filled_px:
            msgs.append(f"DEM '{self.path}': filled {self.filled_px} nodata DEM samples by interpolation "
                        f"from the hole edges (GDAL FillNodata, up to {self.fill_distance_px} px)")
        if self.nodata_px:
            msgs.append(f"DEM '{self.path}': {self.nodata_px} output pixels have no terrain (outside the DEM "
                        f"or holes wider than {self.fill_distance_px} DEM px); height.tif is nodata there")
        return msgs


def read_dem_window(dem_path: str | os.PathLike, grid: Grid, fill_distance_px: int = FILL_DISTANCE_PX) -> np.ndarray:
    """DEM elevations on ``grid`` (float32 ``grid.shape_yx``, NaN where none); opens and closes the file.

    For many windows (strips) open a :class:`DemSource` once instead.
    """
    with DemSource(dem_path, fill_distance_px, reference_grid=grid) as src:
        out = src.read(grid)
        for w in src.warnings():
            log.debug(w)
        return out


# --------------------------------------------------------------------------- canopy noise

def _lattice(seed: int, octave: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform [-1, 1] values at integer lattice points (i rows, j cols): a pure hash."""
    with np.errstate(over="ignore"):
        iu = i.astype(np.int64).view(np.uint64)
        ju = j.astype(np.int64).view(np.uint64)
        key = splitmix64(np.uint64(seed & 0xFFFFFFFF) * GOLD + np.uint64(octave + 1) * M1)
        z = splitmix64(key + iu[:, None] * M2 + ju[None, :] * GOLD)
    return ((z >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 23) - 1.0


def _axis(start: int, n: int, cell_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index below each pixel centre and its smoothstep weight, from global pixel positions."""
    u = (np.arange(n, dtype=np.float64) + (float(start) + 0.5)) / cell_px
    i = np.floor(u)
    f = u - i
    return i.astype(np.int64), f * f * (3.0 - 2.0 * f)


def value_noise(seed: int, octave: int, row0: int, col0: int, shape_yx: tuple[int, int],
                cell_px: float) -> np.ndarray:
    """Smooth noise in [-1, 1] on the pixels of a window; a pure function of seed and global pixel position.

    Lattice values are hashed at integer multiples of ``cell_px`` pixels and
    interpolated with smoothstep weights, so two windows agree bit for bit
    where they overlap.
    """
    h, w = shape_yx
    cell_px = max(float(cell_px), 1e-6)
    ri, rw = _axis(row0, h, cell_px)
    ci, cw = _axis(col0, w, cell_px)
    li = np.arange(ri.min(), ri.max() + 2, dtype=np.int64) if h else np.zeros(0, np.int64)
    lj = np.arange(ci.min(), ci.max() + 2, dtype=np.int64) if w else np.zeros(0, np.int64)
    if h == 0 or w == 0:
        return np.zeros(shape_yx, dtype=np.float32)
    lat = _lattice(seed, octave, li, lj)
    a, b = ri - li[0], ci - lj[0]
    rows = (lat[a] * (1.0 - rw)[:, None] + lat[a + 1] * rw[:, None]).astype(np.float32)  # (h, lattice cols)
    left, right = rows[:, b], rows[:, b + 1]  # the full-size work in float32
    right -= left
    right *= cw.astype(np.float32)[None, :]
    left += right
    return left


@dataclass(frozen=True)
class CanopyParams:
    """Vegetation canopy heights per class (metres above ground) and their texture.

    ``heights_m`` maps class names to mean canopy height; classes not named
    (grass, farmland, ...) get 0. ``variation`` is the largest relative
    deviation from the mean (0.3: 15 m woodland ranges 10.5..19.5 m). The
    texture mixes stand-scale (``stand_m``) and crown-scale (``crown_m``)
    smooth noise, ``crown_weight`` of the latter, both in ground metres.
    """

    heights_m: Mapping[str, float] = field(default_factory=lambda: {"woodland": 15.0, "wetland": 1.0})
    variation: float = 0.3
    stand_m: float = 60.0
    crown_m: float = 6.0
    crown_weight: float = 0.4

    def __post_init__(self) -> None:
        for name, h in self.heights_m.items():
            if not (math.isfinite(float(h)) and float(h) >= 0):
                raise InputError(f"canopy height for '{name}' is {h}; give a non-negative number of metres")
        if not (0.0 <= self.variation <= 1.0):
            raise InputError(f"canopy variation {self.variation} must be between 0 and 1 (a fraction of the mean)")
        if not (self.stand_m > 0 and self.crown_m > 0 and 0.0 <= self.crown_weight <= 1.0):
            raise InputError("canopy stand_m and crown_m must be positive and crown_weight within 0..1")


def canopy_field(seed: int, row0: int, col0: int, shape_yx: tuple[int, int], gsd_m: float,
                 variation: float = 0.3, stand_m: float = 60.0, crown_m: float = 6.0,
                 crown_weight: float = 0.4) -> np.ndarray:
    """Relative canopy height factor ``1 + variation * noise`` (mean about 1) on a window.

    ``gsd_m`` must be the same for every window of one output (e.g. the
    grid's centre GSD) for the texture to be seamless.
    """
    stand = value_noise(seed, 0, row0, col0, shape_yx, stand_m / gsd_m)
    crown = value_noise(seed, 1, row0, col0, shape_yx, crown_m / gsd_m)
    n = (1.0 - crown_weight) * stand + crown_weight * crown
    return (1.0 + variation * n).astype(np.float32)


def compose_heights(terrain_m: np.ndarray | None, object_m: np.ndarray, class_map: np.ndarray, schema: Schema,
                    seed: int, canopy: CanopyParams | None = None, *, row0: int = 0, col0: int = 0,
                    gsd_m: float = 1.0, nodata: float = NODATA, base_m: np.ndarray | None = None) -> np.ndarray:
    """Surface heights: terrain + buildings + canopy, float32, ``nodata`` where the terrain is NaN.

    Parameters
    ----------
    terrain_m : DEM elevations on the window (NaN = none), or None for flat ground at 0
    object_m : building heights above ground from ``rasterize_heights`` (0 elsewhere)
    class_map : schema class ids on the same window (``rasterize_classes``)
    seed : render seed; with ``row0``, ``col0`` (the window's global pixel offset in the
        output grid) and ``gsd_m`` (ground metres per pixel, constant for one output)
        it fixes the canopy texture, so strips and tiles are seamless
    canopy : per-class canopy heights (default :class:`CanopyParams`)
    base_m : per-pixel base elevation of the object there (NaN: none), from
        :meth:`geogan.rasterizer.VectorClassSource.object_layers`: a building stands on its one
        base (the lowest ground under it), so a flat roof stays flat on a slope; without it
        objects follow the terrain pixel by pixel

    Water pixels carry no object (terrain surface); canopy classes get their
    canopy unless an object with its own height stands there (a building, a tree
    crown with its own height); roads and every other class add nothing, so they
    never change the terrain.
    """
    canopy = canopy if canopy is not None else CanopyParams()
    objects = np.nan_to_num(np.asarray(object_m, dtype=np.float32), nan=0.0)
    shape = objects.shape
    if class_map.shape != shape or (terrain_m is not None and terrain_m.shape != shape):
        raise ValueError(f"shapes differ: objects {shape}, classes {class_map.shape}, "
                         f"terrain {None if terrain_m is None else terrain_m.shape}")
    per_class = np.zeros(max(len(schema.classes), int(class_map.max(initial=0)) + 1), dtype=np.float32)
    for name, h in canopy.heights_m.items():
        per_class[schema.by_name(name).id] = float(h)
    mean_h = per_class[class_map]
    if np.any(mean_h > 0):
        factor = canopy_field(seed, row0, col0, shape, gsd_m, canopy.variation, canopy.stand_m, canopy.crown_m,
                              canopy.crown_weight)
        objects = np.where(objects > 0, objects, np.maximum(mean_h * factor, 0.0)).astype(np.float32)
    water = class_map == schema.by_name("water").id if "water" in schema.names else np.zeros(shape, bool)
    objects[water] = 0.0
    if terrain_m is None:
        return objects.astype(np.float32)
    out = (np.asarray(terrain_m, dtype=np.float32) + objects).astype(np.float32)
    if base_m is not None:
        if base_m.shape != shape:
            raise ValueError(f"shapes differ: objects {shape}, bases {base_m.shape}")
        on_base = np.isfinite(base_m) & ~water & np.isfinite(terrain_m)
        out[on_base] = base_m[on_base] + objects[on_base]
    out[~np.isfinite(out)] = nodata
    return out


def building_bases_m(feats, dem: "DemSource") -> np.ndarray:
    """One base elevation per feature of a :class:`~geogan.features.FeatureSet` (float64, NaN for features
    that follow the terrain: all but buildings, and buildings off the DEM).

    The lowest DEM value at the footprint's vertices and its centroid (bilinear in the DEM's own pixels),
    the same rule as the 3-D scene's solids (:func:`geogan.scene._base_m`), rounded to 1 mm. A flat
    roof on it is flat; every wall reaches the ground (the base is at or below the terrain there).
    """
    n = len(feats)
    out = np.full(n, np.nan)
    table = feats.buildings
    standing = np.isfinite(np.asarray(feats.heights_m, dtype=np.float64))
    if table is not None:
        standing &= ~table.trees
    idx = np.flatnonzero(standing)
    if not len(idx):
        return out
    geoms = feats.geometries[idx]
    xy, which = shapely.get_coordinates(geoms, return_index=True)
    centres = shapely.get_coordinates(shapely.centroid(geoms))
    xy = np.vstack([xy, centres])
    which = np.concatenate([which, np.arange(len(idx))])
    z = dem.sample(xy[:, 0], xy[:, 1], feats.crs)
    lowest = np.full(len(idx), np.inf)
    np.fmin.at(lowest, which, z)
    lowest[~np.isfinite(lowest)] = np.nan
    out[idx] = np.round(lowest / 1e-3) * 1e-3
    return out


# --------------------------------------------------------------------------- hillshade


def _pad_linear(z: np.ndarray) -> np.ndarray:
    """Pad by one pixel on each side, extrapolating linearly (2*edge - next) so planes stay planes."""
    pad_r = (1, 1)
    mode_r = "reflect" if z.shape[0] > 1 else "edge"
    mode_c = "reflect" if z.shape[1] > 1 else "edge"
    if mode_r == "reflect":
        z = np.pad(z, (pad_r, (0, 0)), mode="reflect", reflect_type="odd")
    else:
        z = np.pad(z, (pad_r, (0, 0)), mode="edge")
    if mode_c == "reflect":
        return np.pad(z, ((0, 0), (1, 1)), mode="reflect", reflect_type="odd")
    return np.pad(z, ((0, 0), (1, 1)), mode="edge")


def hillshade(height_m: np.ndarray, res_xy_m: tuple[float, float], azimuth_deg: float = 315.0,
              altitude_deg: float = 45.0, z_factor: float = 1.0, *, above: np.ndarray | None = None,
              below: np.ndarray | None = None) -> np.ndarray:
    """Shaded relief (uint8, 0..255) by Horn's method, lit from ``azimuth_deg`` (clockwise from north).

    ``res_xy_m`` is the pixel size in ground metres (x, y), the same unit as
    the heights (times ``z_factor``). A flat surface gives
    ``255 * sin(altitude)``; faces turned from the light go to 0. Edges are
    padded by one pixel extrapolated linearly (a plane shades uniformly to
    its border); for a strip pass the height row just above and just below
    it as ``above`` / ``below`` (1-D, width W) so strip borders match the
    full-grid result. Pixels that are, or touch, NaN/nodata give 0.
    """
    z = np.asarray(height_m, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"hillshade needs a 2-D array, got shape {z.shape}")
    z = np.where(z == NODATA, np.nan, z)
    p = _pad_linear(z)
    if above is not None:
        p[0] = _pad_linear(np.asarray(above, dtype=np.float64).reshape(1, -1))[1]
    if below is not None:
        p[-1] = _pad_linear(np.asarray(below, dtype=np.float64).reshape(1, -1))[1]
    p = np.where(p == NODATA, np.nan, p)
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    rx, ry = float(res_xy_m[0]), float(res_xy_m[1])
    dz_dx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * rx) * z_factor      # towards east
    dz_dy = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * ry) * z_factor      # towards north (rows go south)
    az, alt = math.radians(azimuth_deg), math.radians(altitude_deg)
    lx, ly, lz = math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt), math.sin(alt)
    shade = (-dz_dx * lx - dz_dy * ly + lz) / np.sqrt(1.0 + dz_dx ** 2 + dz_dy ** 2)
    shade = np.where(np.isnan(z), 0.0, np.nan_to_num(shade, nan=0.0))
    return np.clip(np.rint(255.0 * shade), 0, 255).astype(np.uint8)
