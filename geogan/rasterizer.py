"""Burning classified features into a grid: class map and object (building) heights.

Pure functions: a :class:`~geogan.features.FeatureSet` (plain data) and a :class:`Grid` in, a
new ndarray out; :class:`VectorClassSource` offers them as the render's
:class:`~geogan.sketch.ClassSource`. Pixel rule: a pixel takes a feature's value when its centre
lies inside the feature (rasterio's default, ``all_touched=False``); features are drawn in
priority order, so higher-priority classes end up on top. Building tops and roof profiles come
from :mod:`geogan.heights` (see there for the OSM semantics). Memory: one array of the grid's
shape per layer.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio import features as rio_features
from rasterio.errors import NotGeoreferencedWarning

from .features import FeatureSet
from .grid import Grid
from .heights import ROOF_CODE, ROOF_SHAPES, BuildingTable, roof_heights_m

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
    edges, so the same pixels burn. Shapes whose box holds no pixel centre are left out first
    (:func:`reach_pixel_centres`): they burn nothing.
    """
    values = list(values)
    reach = reach_pixel_centres(geoms, grid)
    if not reach.all():
        geoms, values = geoms[reach], [v for v, r in zip(values, reach.tolist()) if r]
    left, bottom, right, top = grid.bounds
    mx, my = CLIP_MARGIN_PX * abs(grid.transform.a), CLIP_MARGIN_PX * abs(grid.transform.e)
    clipped = shapely.clip_by_rect(geoms, left - mx, bottom - my, right + mx, top + my)
    return polygon_mappings(clipped, values)


CENTRE_SLACK_PX = 1e-3  # kept: shapes whose box misses a pixel centre by less (rounding in GDAL's transform)


def reach_pixel_centres(geoms: np.ndarray, grid: Grid) -> np.ndarray:
    """bool per shape: whether its bounding box holds a pixel centre of ``grid``'s lattice (to
    ``CENTRE_SLACK_PX``). GDAL burns the pixels whose centres lie inside a polygon (``all_touched``
    off), so a shape whose box holds none burns no pixel and can be left out: at coarse GSDs, shapes far
    below a pixel (sheds, tree crowns) are mostly such and cost nothing to draw; at fine ones none are."""
    b = shapely.bounds(geoms).reshape(-1, 4)
    t = grid.transform  # north-up (Grid checks it)
    c0, c1 = (b[:, 0] - t.c) / t.a - 0.5, (b[:, 2] - t.c) / t.a - 0.5
    r0, r1 = (b[:, 3] - t.f) / t.e - 0.5, (b[:, 1] - t.f) / t.e - 0.5
    with np.errstate(invalid="ignore"):  # empty shapes have NaN bounds: left out
        return ((np.floor(c1 + CENTRE_SLACK_PX) >= np.ceil(c0 - CENTRE_SLACK_PX))
                & (np.floor(r1 + CENTRE_SLACK_PX) >= np.ceil(r0 - CENTRE_SLACK_PX)))


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


@dataclass(frozen=True, eq=False)
class DrawnWindow:
    """The features over one window drawn once, from which its class map and object heights both follow.

    ``idx``: the FeatureSet indices of the features on the window, in drawing order; ``shapes``: what was
    burnt, their clipped polygon parts (:func:`burnable`) valued 1 + their position in ``idx``; ``rank``
    (``grid.shape_yx``): 1 + the position in ``idx`` of the feature drawn on top of each pixel, 0 where
    none. Read-only.
    """

    idx: np.ndarray
    shapes: list
    rank: np.ndarray  # the smallest unsigned type holding len(idx) (_burn_ranks): uint8 for up to 255 features

    def classes(self, class_ids: np.ndarray, fill: int = 0) -> np.ndarray:
        """uint8 class ids of the features on top (``fill`` where none)."""
        lut = np.empty(len(self.idx) + 1, dtype=np.uint8)
        lut[0] = fill
        lut[1:] = class_ids[self.idx]
        return lut[self.rank]

    def shapes_of(self, positions: np.ndarray) -> list[tuple[dict, int]]:
        """The burnt parts of the features at ``positions`` (into ``idx``), in that order, valued 1 + their
        place in ``positions``: what :func:`burnable` gives for those features alone."""
        parts: dict[int, list[dict]] = {}
        for shape, value in self.shapes:
            parts.setdefault(value - 1, []).append(shape)
        return [(shape, j + 1) for j, k in enumerate(positions.tolist()) for shape in parts.get(k, ())]


def draw_window(feats: FeatureSet, grid: Grid) -> DrawnWindow:
    """The features over ``grid`` drawn in priority order (:class:`DrawnWindow`)."""
    idx = feats.query(grid.bounds)
    shapes = burnable(feats.geometries[idx], range(1, len(idx) + 1), grid) if len(idx) else []
    return DrawnWindow(idx, shapes, _burn_ranks(shapes, len(idx), grid))


def _burn_ranks(shapes: list[tuple[dict, int]], n: int, grid: Grid) -> np.ndarray:
    """``grid.shape_yx`` of the smallest unsigned type holding ``n``, with ``shapes`` (valued 1 + their
    feature's place among ``n``) burnt in order (0: none)."""
    dtype = np.uint8 if n < 2 ** 8 else np.uint16 if n < 2 ** 16 else np.uint32
    rank = np.zeros(grid.shape_yx, dtype=dtype)
    if shapes:
        rio_features.rasterize(shapes, out=rank, transform=grid.transform)
    return rank


def rasterize_classes(feats: FeatureSet, grid: Grid, fill: int = 0) -> np.ndarray:
    """Class ids (uint8, shape ``grid.shape_yx``); ``fill`` where nothing is drawn."""
    return draw_window(feats, grid).classes(feats.class_ids, fill)


def rasterize_heights(feats: FeatureSet, grid: Grid) -> np.ndarray:
    """Object heights above ground in metres (float32): building tops with their roofs, else 0.

    The same surface as :meth:`VectorClassSource.object_heights` (see :func:`rasterize_object_heights`).
    """
    return rasterize_object_heights(feats, grid)


@dataclass(frozen=True, eq=False)
class VectorClassSource:
    """A :class:`FeatureSet` as the render's :class:`~geogan.sketch.ClassSource`: it rasterizes the
    features onto any window (a sketch's :class:`~geogan.sketch.RasterClassSource` offers the same).

    ``bases_m``: one base elevation per feature (NaN: none), from
    :func:`geogan.terrain.building_bases_m` on a DEM (:meth:`standing_on`); buildings then stand on
    it (:meth:`object_layers`) instead of following the DEM pixel by pixel.
    """

    features: FeatureSet
    bases_m: np.ndarray | None = None

    def classes(self, grid: Grid) -> np.ndarray:
        return _LAST_DRAWN.keep(self.features, grid).classes(self.features.class_ids)

    def object_heights(self, grid: Grid) -> np.ndarray:
        """Top surface of objects above ground on ``grid`` (buildings with their roofs, else 0)."""
        return _top_and_bottom(self.features, self._surface(grid), False)

    def object_height_layers(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(top, bottom) above ground on ``grid``: the bottom is the ``min_height`` of the part making the top."""
        return _top_and_bottom(self.features, self._surface(grid), True)

    def _surface(self, grid: Grid) -> "ObjectSurface":
        return object_surface(self.features, grid, _LAST_DRAWN.take(self.features, grid))

    def standing_on(self, dem) -> "VectorClassSource":
        """This source with one base elevation per building from ``dem`` (a :class:`~geogan.terrain.DemSource`)."""
        from .terrain import building_bases_m

        return VectorClassSource(self.features, building_bases_m(self.features, dem))

    def object_layers(self, grid: Grid) -> tuple[np.ndarray, np.ndarray | None]:
        """(top above its base, base elevation or NaN where an object follows the terrain; None without bases)
        on ``grid``: what :func:`geogan.terrain.compose_heights` takes as ``object_m`` and ``base_m``."""
        layers = self._surface(grid)
        if self.bases_m is None:
            return layers.top_m, None
        return layers.top_m, layers.per_pixel(self.bases_m)


class _LastDrawn:
    """Each thread's last class map drawing (:func:`draw_window`, one window) of a FeatureSet, kept until the
    same window's object heights take it: a render asks a window's class map and then its object heights
    (:func:`geogan.pipeline.write_surface`), which follow from the same drawing, so the features are
    clipped, converted and burnt once for both. Kept per FeatureSet (by identity) and thread, and let go
    with the FeatureSet: nothing outlives the render that drew it."""

    def __init__(self) -> None:
        self._kept: dict[int, dict[int, tuple[Grid, DrawnWindow]]] = {}  # id(FeatureSet) -> thread -> drawing
        self._lock = threading.Lock()

    def keep(self, feats: FeatureSet, grid: Grid) -> DrawnWindow:
        """``feats`` drawn on ``grid``, kept for :meth:`take` in this thread."""
        drawn = draw_window(feats, grid)
        with self._lock:
            by_thread = self._kept.get(id(feats))
            if by_thread is None:
                by_thread = self._kept[id(feats)] = {}
                weakref.finalize(feats, self._kept.pop, id(feats), None)
            by_thread[threading.get_ident()] = (grid, drawn)
        return drawn

    def take(self, feats: FeatureSet, grid: Grid) -> DrawnWindow | None:
        """The drawing of ``feats`` on ``grid`` this thread kept (no longer kept), or None."""
        with self._lock:
            kept = self._kept.get(id(feats), {}).pop(threading.get_ident(), None)
        return kept[1] if kept is not None and kept[0] == grid else None


_LAST_DRAWN = _LastDrawn()


def object_layers(source, grid: Grid) -> tuple[np.ndarray, np.ndarray | None]:
    """(object heights, per-pixel base elevations or None) of any class source on ``grid``: a
    :class:`VectorClassSource` standing on a DEM gives bases, other sources (a sketch) only heights."""
    if isinstance(source, VectorClassSource):
        return source.object_layers(grid)
    return source.object_heights(grid), None


# ----------------------------------------------------------------------------- object heights


def _pixel_windows(bounds: np.ndarray, grid) -> np.ndarray:
    """(N, 4) rows r0, r1 and cols c0, c1 (half-open, clipped) of ``grid`` covering each (minx, miny, maxx, maxy).

    Empty windows have r1 <= r0 or c1 <= c0.
    """
    inv = ~grid.transform
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    xs = b[:, [0, 2, 0, 2]]
    ys = b[:, [1, 1, 3, 3]]
    cols = inv.a * xs + inv.b * ys + inv.c
    rows = inv.d * xs + inv.e * ys + inv.f
    with np.errstate(invalid="ignore"):
        c0 = np.clip(np.floor(cols.min(axis=1)), 0, grid.width)
        c1 = np.clip(np.ceil(cols.max(axis=1)), 0, grid.width)
        r0 = np.clip(np.floor(rows.min(axis=1)), 0, grid.height)
        r1 = np.clip(np.ceil(rows.max(axis=1)), 0, grid.height)
    return np.nan_to_num(np.column_stack([r0, r1, c0, c1]), nan=0).astype(np.int64)


def _paint_roof(geom, window, top_m: float, roof_m: float, shape: str, direction_deg: float, across: bool,
                jac: np.ndarray, grid, surface: np.ndarray, owner: np.ndarray, index: int) -> None:
    """Max-composite one shaped roof into ``surface`` (and ``index`` into ``owner`` where it is on top).

    ``window`` (r0, r1, c0, c1) bounds the pixels of ``grid`` that can lie inside ``geom``.
    """
    r0, r1, c0, c1 = (int(v) for v in window)
    if r1 <= r0 or c1 <= c0 or not np.all(np.isfinite(jac)) or abs(np.linalg.det(jac)) < 1e-300:
        return
    rr, cc = np.mgrid[r0:r1, c0:c1]
    t = grid.transform
    xs = t.a * (cc + 0.5) + t.b * (rr + 0.5) + t.c
    ys = t.d * (cc + 0.5) + t.e * (rr + 0.5) + t.f
    shapely.prepare(geom)
    inside = shapely.contains_xy(geom, xs, ys)
    if not inside.any():
        return
    origin = np.array(shapely.bounds(geom)[:2])
    to_m = np.linalg.inv(jac)
    pts_m = (np.column_stack([xs[inside], ys[inside]]) - origin) @ to_m.T
    foot_m = shapely.transform(geom, lambda xy: (xy - origin) @ to_m.T)
    h = roof_heights_m(shape, foot_m, pts_m, top_m, roof_m, direction_deg, across)
    sub_s = surface[r0:r1, c0:c1]  # views: the masked assignments below write through
    sub_o = owner[r0:r1, c0:c1]
    cur = sub_s[inside]
    higher = h > cur
    sub_s[inside] = np.where(higher, h, cur)
    sub_o[inside] = np.where(higher, index, sub_o[inside])


@dataclass(frozen=True)
class _HeightFeatures:
    """Per-feature height attributes of the features on one window (query order)."""

    geoms: np.ndarray
    tops_m: np.ndarray  # float64 top above ground, NaN without a height
    bottoms_m: np.ndarray  # float64 bottom above ground, 0 where untagged
    shapes: np.ndarray  # int codes into ROOF_SHAPES
    roof_m: np.ndarray  # ridge minus eaves
    is_part: np.ndarray  # bool: a building:part
    table: BuildingTable | None  # the window's rows of FeatureSet.buildings (None: flat roofs)

    @property
    def has_h(self) -> np.ndarray:
        return np.isfinite(self.tops_m)

    @property
    def shaped(self) -> np.ndarray:
        return self.has_h & (self.shapes != ROOF_CODE["flat"]) & (self.roof_m > 0)


def _height_features(feats: FeatureSet, idx: np.ndarray) -> _HeightFeatures:
    tops = np.asarray(feats.heights_m[idx], dtype=np.float64)
    table = getattr(feats, "buildings", None)
    n = len(idx)
    if table is None:
        return _HeightFeatures(feats.geometries[idx], tops, np.zeros(n), np.zeros(n, int), np.zeros(n),
                               np.zeros(n, bool), None)
    tb = table.take(idx)
    return _HeightFeatures(feats.geometries[idx], tops, np.nan_to_num(tb.min_heights_m.astype(np.float64), nan=0.0),
                           tb.roof_shapes.astype(int), tb.roof_heights_m.astype(np.float64), tb.is_part, tb)


def _paint_layer(hf: _HeightFeatures, members: np.ndarray, grid: Grid,
                 drawn: DrawnWindow) -> tuple[np.ndarray, np.ndarray]:
    """(surface, owner) of the ``members`` alone: the highest roof over each pixel (-inf where none) and
    the index (into ``hf``) of the feature it belongs to (-1 where none). ``drawn``: the window's
    features drawn (:func:`draw_window`), whose burnt parts are reused."""
    surface = np.full(grid.shape_yx, -np.inf, dtype=np.float32)
    owner = np.full(grid.shape_yx, -1, dtype=np.int64)
    flat = np.flatnonzero(members & ~hf.shaped)
    if len(flat):  # draw in ascending height: the last drawn, the tallest, wins
        flat = flat[np.argsort(hf.tops_m[flat], kind="stable")]
        pick = _burn_ranks(drawn.shapes_of(flat), len(flat), grid)
        hit = pick > 0
        owner[hit] = flat[pick[hit] - 1]
        surface[hit] = hf.tops_m[owner[hit]]
    roofs = np.flatnonzero(members & hf.shaped)
    windows = _pixel_windows(shapely.bounds(hf.geoms[roofs]), grid) if len(roofs) else np.zeros((0, 4), int)
    tb = hf.table
    for i, window in zip(roofs, windows):
        _paint_roof(hf.geoms[i], window, float(hf.tops_m[i]), float(hf.roof_m[i]), ROOF_SHAPES[hf.shapes[i]],
                    float(tb.roof_directions_deg[i]), bool(tb.roof_across[i]), tb.ground_jacobians[i],
                    grid, surface, owner, int(i))
    return surface, owner


def _building_surface(hf: _HeightFeatures, grid: Grid, drawn: DrawnWindow) -> tuple[np.ndarray, np.ndarray]:
    """(surface, owner) of all buildings: outlines, then ``building:part`` features replacing them."""
    layers = {}
    for part in (False, True):
        members = hf.has_h & (hf.is_part == part)
        if members.any():
            layers[part] = _paint_layer(hf, members, grid, drawn)
    if False in layers:
        surface, owner = layers[False]
    else:
        surface, owner = np.full(grid.shape_yx, -np.inf, np.float32), np.full(grid.shape_yx, -1, np.int64)
    if True in layers:  # parts replace the outline under them
        s, o = layers.pop(True)
        hit = np.isfinite(s)
        surface[hit], owner[hit] = s[hit], o[hit]
    return surface, owner


@dataclass(frozen=True)
class ObjectSurface:
    """Objects on one window: ``top_m`` above ground (0 where none) and ``owner``, the FeatureSet index of
    the feature making each pixel's top (-1 where none)."""

    top_m: np.ndarray
    owner: np.ndarray

    def per_pixel(self, per_feature: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """float32 window of ``per_feature[owner]`` (``fill`` where no object)."""
        out = np.full(self.owner.shape, fill, dtype=np.float32)
        hit = self.owner >= 0
        out[hit] = np.asarray(per_feature, dtype=np.float32)[self.owner[hit]]
        return out


def object_surface(feats: FeatureSet, grid: Grid, drawn: DrawnWindow | None = None) -> ObjectSurface:
    """Object heights above ground on ``grid`` and the feature making each pixel's top.

    A pixel shows an object (a building, a tree crown) when the feature drawn on top there (class
    drawing order, as in the class map) has a height; its value is then the highest roof over it,
    ``building:part`` features replacing the outline they stand on. ``drawn``: the window's features
    already drawn (:func:`draw_window` of ``feats`` on ``grid``; None: drawn here when needed).
    """
    out = np.zeros(grid.shape_yx, dtype=np.float32)
    owner_out = np.full(grid.shape_yx, -1, dtype=np.int64)
    idx = feats.query(grid.bounds) if drawn is None else drawn.idx
    hf = _height_features(feats, idx) if len(idx) else None
    if hf is None or not hf.has_h.any():
        return ObjectSurface(out, owner_out)
    drawn = draw_window(feats, grid) if drawn is None else drawn
    rank = drawn.rank
    on_building = rank > 0
    on_building[on_building] = hf.has_h[rank[on_building] - 1]
    surface, owner = _building_surface(hf, grid, drawn)
    # a pixel whose top feature is a building but no footprint claimed it (a centre exactly on an
    # edge, where GDAL and GEOS disagree) takes that feature's top
    missing = on_building & ((owner < 0) | ~np.isfinite(surface))
    if missing.any():
        owner[missing] = rank[missing] - 1
        surface[missing] = hf.tops_m[owner[missing]]
    out[on_building] = surface[on_building]
    owner_out[on_building] = idx[owner[on_building]]
    return ObjectSurface(out, owner_out)


def rasterize_object_heights(feats: FeatureSet, grid: Grid, *, with_bottom: bool = False):
    """Object heights above ground in metres (float32 ``grid.shape_yx``): building tops with roofs, else 0
    (see :func:`object_surface`). With ``with_bottom=True`` returns ``(top, bottom)``, ``bottom`` holding
    the ``min_height`` of the part that makes the top (0 elsewhere).
    """
    return _top_and_bottom(feats, object_surface(feats, grid), with_bottom)


def _top_and_bottom(feats: FeatureSet, layers: ObjectSurface, with_bottom: bool):
    if not with_bottom:
        return layers.top_m
    return layers.top_m, layers.per_pixel(np.nan_to_num(feats.min_heights_m, nan=0.0), 0.0)
