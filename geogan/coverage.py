"""The part of an output grid the input data covers; outside it the outputs are nodata (``fill="nodata"``, the
default) or drawn as background as if mapped (``fill="background"``, ``--fill background``), with a one-line
warning saying how much of the area is outside.

What a source covers (docs/how-it-works.md, "Outside the data"):

* an OSM file (.osm, .osm.pbf): the box it declares (``<bounds>``, the PBF header box,
  :func:`geogan.provenance.osm_coverage_lonlat`); without one, the bounding box of the features drawn;
* any other vector file (GPKG, GeoJSON, Shapefile): its extent (the box around its layers' extents, each
  the bounding box of the layer's features, in the file's CRS);
* several files: the union of theirs; an Overpass download, a sketch or GeoDataFrames (features chosen in
  memory, no file whose extent says what was mapped): the whole area (no mask);
* a DEM: only height.tif, which is nodata where the DEM has no terrain whatever ``fill``
  (:func:`geogan.terrain.check_dem_overlaps` warns), so it takes no part here.

:class:`Coverage` is a pure function of a pixel's global position on the output grid (its centre inside the
coverage polygon), so strips, Dask blocks and whole renders get the same mask; the writers apply it
(:class:`geogan.write.RasterSpec` ``coverage``): aerial.tif gets an alpha band (an internal mask with JPEG),
height.tif its nodata, classes.tif :data:`NODATA_CLASS`, hillshade.tif 0.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyproj
import shapely

from .grid import Grid
from .provenance import uncovered_message

log = logging.getLogger("geogan")

NODATA_CLASS = 255  # classes.tif outside the coverage (a class map holds at most 255 classes: ids 0..254)
SEGMENT_DEG = 1e-3  # lon/lat edges are densified to this before projecting (sub-millimetre bends in UTM)
_prepare_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class Coverage:
    """The pixels of ``grid`` whose centres lie strictly inside ``polygon`` (in ``grid.crs``)."""

    grid: Grid
    polygon: object  # a shapely (multi)polygon

    def rows(self, row0: int, n: int) -> np.ndarray:
        """bool (n, width): the covered pixels of rows ``row0 .. row0 + n``."""
        t, width = self.grid.transform, self.grid.width
        cols = np.arange(width, dtype=np.float64) + 0.5
        rows = np.arange(row0, row0 + n, dtype=np.float64) + 0.5
        rect = self._rectangle()
        if rect is not None:
            xmin, ymin, xmax, ymax = rect
            x, y = t.a * cols + t.c, t.e * rows + t.f
            return ((y > ymin) & (y < ymax))[:, None] & ((x > xmin) & (x < xmax))[None, :]
        if t.b == 0 and t.d == 0 and t.a > 0:  # north-up: row by row (about 100x contains_xy's speed)
            return scanline_inside(self.polygon, t.e * rows + t.f, t.a * cols + t.c)
        x = t.a * cols[None, :] + t.b * rows[:, None] + t.c
        y = t.d * cols[None, :] + t.e * rows[:, None] + t.f
        poly = self._prepared()
        box = shapely.box(x.min(), y.min(), x.max(), y.max())
        if shapely.contains_properly(poly, box):
            return np.ones((n, width), dtype=bool)
        if shapely.disjoint(poly, box):
            return np.zeros((n, width), dtype=bool)
        return shapely.contains_xy(poly, x, y)

    def covered_share(self) -> float:
        """The share of the grid's pixels covered: exact for a rectangle in the grid's axes, else by area."""
        rect = self._rectangle()
        if rect is not None:
            xmin, ymin, xmax, ymax = rect
            t, (height, width) = self.grid.transform, self.grid.shape_yx
            x = t.a * (np.arange(width, dtype=np.float64) + 0.5) + t.c
            y = t.e * (np.arange(height, dtype=np.float64) + 0.5) + t.f
            inside = np.count_nonzero((x > xmin) & (x < xmax)) * np.count_nonzero((y > ymin) & (y < ymax))
            return float(inside) / max(width * height, 1)
        area = shapely.box(*self.grid.bounds)
        share = float(shapely.area(shapely.intersection(self.polygon, area)) / max(shapely.area(area), 1e-300))
        return 1.0 if share > 1 - 1e-9 else share

    def _rectangle(self) -> tuple[float, float, float, float] | None:
        """The polygon's bounds when it is a rectangle in a north-up grid's axes (the fast, exact path)."""
        t = self.grid.transform
        if t.b != 0 or t.d != 0 or shapely.get_type_id(self.polygon) != shapely.GeometryType.POLYGON:
            return None
        env = shapely.envelope(self.polygon)
        if shapely.area(self.polygon) < shapely.area(env) * (1 - 1e-12):
            return None
        return tuple(float(v) for v in shapely.bounds(env))  # type: ignore[return-value]

    def _prepared(self):
        with _prepare_lock:  # an unpickled (Dask) copy comes unprepared
            if not shapely.is_prepared(self.polygon):
                shapely.prepare(self.polygon)
        return self.polygon


def scanline_inside(polygon, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """bool (len(y), len(x)): the points (x[j], y[i]) (``x`` increasing) inside ``polygon``, by the even-odd rule
    along each row: the crossings of the row's line with the polygon's edges (half-open in y, so a vertex
    on the line counts once) bound the intervals inside; a point on an edge is outside, as
    ``shapely.contains_xy`` has it."""
    xy = [shapely.get_coordinates(ring) for ring in _rings(polygon)]
    out = np.zeros((len(y), len(x)), dtype=bool)
    if not xy:  # an empty coverage
        return out
    x0, y0 = np.concatenate([c[:-1, 0] for c in xy]), np.concatenate([c[:-1, 1] for c in xy])
    x1, y1 = np.concatenate([c[1:, 0] for c in xy]), np.concatenate([c[1:, 1] for c in xy])
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    for i, yi in enumerate(y):
        edges = (lo <= yi) & (yi < hi)
        if not edges.any():
            continue
        a0, b0, a1, b1 = x0[edges], y0[edges], x1[edges], y1[edges]
        crossings = np.sort(a0 + (yi - b0) * (a1 - a0) / (b1 - b0))
        starts = np.searchsorted(x, crossings[0::2], side="right")
        stops = np.searchsorted(x, crossings[1::2], side="left")
        for j0, j1 in zip(starts, stops):
            out[i, j0:j1] = True
    return out


def _rings(polygon) -> list:
    parts = shapely.get_parts(polygon)
    return [ring for part in parts if shapely.get_type_id(part) == shapely.GeometryType.POLYGON and not part.is_empty
            for ring in (part.exterior, *part.interiors)]


# ---------------------------------------------------------------- what the sources cover
def _projected(geom, src_crs, dst_crs, segment: float):
    """``geom`` densified to ``segment`` (source units) and projected."""
    t = pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    dense = shapely.segmentize(geom, segment)
    return shapely.transform(dense, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def layer_extents_lonlat(path: Path):
    """The extent of a vector file as a lon/lat polygon: the box around its layers' extents (per CRS, so a
    file in UTM covers its UTM box), or None when no layer has one."""
    import pyogrio

    bounds_by_crs: dict[str, list] = {}
    try:
        layers = [str(name) for name, kind in pyogrio.list_layers(path) if kind is not None]
        for layer in layers:
            info = pyogrio.read_info(path, layer=layer, force_total_bounds=True)
            b = info.get("total_bounds")
            if b is not None and all(np.isfinite(b)) and b[0] <= b[2] and b[1] <= b[3]:
                bounds_by_crs.setdefault(info.get("crs") or "EPSG:4326", []).append(b)
        boxes = [_lonlat_box(crs, np.asarray(bounds)) for crs, bounds in bounds_by_crs.items()]
    except Exception:  # noqa: BLE001 - the reading itself reports a broken file; here: coverage unknown
        return None
    return shapely.union_all(boxes) if boxes else None


def _lonlat_box(crs: str, bounds: np.ndarray):
    """The box around ``bounds`` (rows of xmin, ymin, xmax, ymax in ``crs``) as a lon/lat polygon."""
    box = shapely.box(bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
    if pyproj.CRS.from_user_input(crs).equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return box
    x0, y0, x1, y1 = box.bounds
    return _projected(box, crs, "EPSG:4326", max(x1 - x0, y1 - y0, 1e-9) / 100)


def declared_coverage_lonlat(paths: Sequence[Path]) -> tuple[list, bool]:
    """The lon/lat polygons the files cover by themselves (OSM bounds, layer extents), and whether a file
    declares none (an OSM file without bounds: the features drawn from it stand for it)."""
    from .provenance import osm_coverage_lonlat
    from .sources import is_osm_path

    pieces, undeclared = [], False
    for path in paths:
        piece = osm_coverage_lonlat([path]) if is_osm_path(path) else layer_extents_lonlat(path)
        if piece is None:
            undeclared = True
        else:
            pieces.append(piece)
    return pieces, undeclared


def coverage_polygon(paths: Sequence[Path], grid: Grid, features=None):
    """What ``paths`` cover near ``grid``, in ``grid.crs`` (None: unknown, no file given or none tells).

    ``features``: the :class:`~geogan.features.FeatureSet` drawn on ``grid`` (its bounding box stands for
    files that declare no coverage)."""
    from .inputs import margin_bbox_lonlat

    if not paths:
        return None
    pieces, undeclared = declared_coverage_lonlat(paths)
    near = shapely.box(*margin_bbox_lonlat(grid, 2))
    out = [_projected(shapely.intersection(p, near), "EPSG:4326", grid.crs, SEGMENT_DEG) for p in pieces]
    if undeclared:
        geoms = getattr(features, "geometries", None)
        if geoms is None or not len(geoms):
            return None
        out.append(shapely.box(*shapely.total_bounds(geoms)))
    return shapely.union_all(out)


def area_coverage(paths: Sequence[Path], grid: Grid, fill: str, features=None) -> tuple[Coverage | None, list[str]]:
    """The mask the outputs of ``grid`` take (None: all of it covered, coverage unknown, or ``fill`` is
    "background") and the warning (logged) when part of the area is outside the data's coverage."""
    polygon = coverage_polygon(paths, grid, features)
    if polygon is None:
        return None, []
    coverage = Coverage(grid, polygon)
    msg = uncovered_message(coverage.covered_share(), fill)
    if msg is None:
        return None, []
    log.warning(msg)
    return (coverage if fill == "nodata" else None), [msg]
