"""Classified features in the output CRS, ready to rasterize.

Plain data: rasterizing them is :mod:`geogan.rasterizer`'s (its ``VectorClassSource`` is how the
render sees a :class:`FeatureSet`).

Turns the raw layers from ``sources.py`` into polygons (lines are buffered to
their width in metres in a local UTM zone, so widths are ground metres in any
output CRS) with a class id, a drawing priority and, for buildings, a height.
Broken geometries (rings with too few points, self-intersections) are repaired
or skipped and counted, never fatal.

Building heights follow OSM Simple 3D Buildings (``height``, ``min_height``,
``building:levels``, ``building:min_level``, ``roof:*``; see ``heights.py``):
``FeatureSet.heights_m`` is each building's top, ``FeatureSet.buildings`` its
bottom, roof shape and the local ground-metre frame used to draw the roof.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj
import shapely
from shapely.strtree import STRtree

from .classes import Schema
from .heights import BuildingHeights, BuildingTable, building_heights, ground_jacobians, log_height_warnings
from .sources import SourceReport

_AREA_TYPES = {"Polygon", "MultiPolygon"}
_LINE_TYPES = {"LineString", "MultiLineString", "LinearRing"}


@dataclass
class FeatureSet:
    """Polygons in the output CRS, sorted by drawing priority (low first)."""

    crs: pyproj.CRS
    geometries: np.ndarray
    class_ids: np.ndarray  # uint8
    priorities: np.ndarray  # int
    heights_m: np.ndarray  # float32 top (ridge) above ground, NaN where the class has no height of its own
    repaired: int = 0
    skipped: int = 0
    counts_by_class: dict[int, int] = field(default_factory=dict)
    _tree: STRtree | None = None
    # per-feature bottom heights and roofs (heights.BuildingTable); None: flat roofs, bottoms at 0
    buildings: BuildingTable | None = None

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def tree(self) -> STRtree:
        if self._tree is None:
            self._tree = STRtree(self.geometries)
        return self._tree

    def query(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Indices (in priority order) of features intersecting ``bounds``."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return np.sort(self.tree.query(shapely.box(*bounds)))

    @property
    def min_heights_m(self) -> np.ndarray:
        """Bottom of each feature above ground (0 on the ground, NaN without a height)."""
        if self.buildings is not None:
            return self.buildings.min_heights_m
        return np.where(np.isfinite(self.heights_m), 0.0, np.nan).astype(np.float32)


def utm_crs_for(lon: float, lat: float) -> pyproj.CRS:
    zone = int((lon + 180) // 6) % 60 + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _transformer(src: pyproj.CRS | str, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _apply(t: pyproj.Transformer, geoms: np.ndarray) -> np.ndarray:
    if not len(geoms):
        return geoms
    return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def _polygonal(geom):
    """The polygonal part of a repaired geometry, or None."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in _AREA_TYPES:
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in geom.geoms if g.geom_type in _AREA_TYPES]
        return shapely.union_all(parts) if parts else None
    return None


def _closed_part_as_area(geom, tags):
    """A closed way tagged ``building:part`` as a polygon (GDAL's osmconf.ini leaves it a line)."""
    if (geom.geom_type in ("LineString", "LinearRing") and "building:part" in tags and geom.is_closed
            and shapely.get_num_coordinates(geom) >= 4):
        return shapely.Polygon(geom.coords)
    return geom


@dataclass
class _Classified:
    """Features of a source report that have a class, in source order: areas, then lines to buffer.

    ``*_meta`` rows are ``(class_id, priority, building tags or None)``.
    """

    area_geoms: list = field(default_factory=list)
    area_meta: list = field(default_factory=list)
    line_geoms: list = field(default_factory=list)
    line_widths: list = field(default_factory=list)
    line_meta: list = field(default_factory=list)
    repaired: int = 0
    skipped: int = 0

    def add(self, geom, kind: str, cls, building_tags) -> None:
        """Add one classified feature (areas repaired when invalid, lines with under 2 points skipped)."""
        if kind == "area":
            if not geom.is_valid:
                geom = _polygonal(shapely.make_valid(geom))
                if geom is None:
                    self.skipped += 1
                    return
                self.repaired += 1
            self.area_geoms.append(geom)
            self.area_meta.append((cls.class_id, cls.priority, building_tags))
        else:
            if shapely.get_num_coordinates(geom) < 2:
                self.skipped += 1
                return
            self.line_geoms.append(geom)
            self.line_widths.append(cls.width_m or 1.0)
            self.line_meta.append((cls.class_id, cls.priority, building_tags))


def _classify(report: SourceReport, schema: Schema, class_field: str | None) -> _Classified:
    """Every feature of ``report`` with a class (by its tags, or by ``class_field`` for non-OSM layers)."""
    building_id = schema.by_name("building").id
    out = _Classified()
    for layer in report.layers:
        for geom, tags in zip(layer.geometries, layer.tags):
            if layer.is_osm:
                geom = _closed_part_as_area(geom, tags)
            gtype = geom.geom_type
            kind = "area" if gtype in _AREA_TYPES else "line" if gtype in _LINE_TYPES else None
            if kind is None:
                continue
            if class_field is not None and not layer.is_osm:
                cls = schema.classify_by_value(tags.get(class_field), kind)
            else:
                cls = schema.classify(tags, kind)
            if cls is not None:
                out.add(geom, kind, cls, tags if cls.class_id == building_id else None)
    return out


def build_features(report: SourceReport, schema: Schema, crs: pyproj.CRS, center_lonlat: tuple[float, float],
                   class_field: str | None = None) -> FeatureSet:
    """Classify, buffer and reproject all features of ``report`` into ``crs``."""
    work = utm_crs_for(*center_lonlat)
    to_work = _transformer("EPSG:4326", work)
    work_to_out = _transformer(work, crs)
    lonlat_to_out = _transformer("EPSG:4326", crs)
    classified = _classify(report, schema, class_field)
    repaired, skipped = classified.repaired, classified.skipped + report.dropped
    polys = _apply(lonlat_to_out, np.array(classified.area_geoms, dtype=object))
    if classified.line_geoms:
        lines = _apply(to_work, np.array(classified.line_geoms, dtype=object))
        buffered = shapely.buffer(lines, np.asarray(classified.line_widths) / 2.0, quad_segs=4)
        buffered = _apply(work_to_out, buffered)
    else:
        buffered = np.array([], dtype=object)
    geoms = np.concatenate([polys, buffered]) if len(buffered) else polys
    meta = classified.area_meta + classified.line_meta
    if geoms is None or not len(meta):
        empty = np.zeros(0)
        return FeatureSet(crs, np.array([], dtype=object), empty.astype(np.uint8), empty.astype(np.int64),
                          empty.astype(np.float32), repaired, skipped)
    class_ids = np.array([m[0] for m in meta], dtype=np.uint8)
    priorities = np.array([m[1] for m in meta], dtype=np.int64)
    lonlat_geoms = np.array(classified.area_geoms + classified.line_geoms, dtype=object)
    heights, table = _building_table([m[2] for m in meta], lonlat_geoms, to_work, crs)
    valid = ~shapely.is_empty(geoms) & shapely.is_valid_input(geoms)
    bad_out = ~shapely.is_valid(geoms)
    if bad_out.any():  # reprojection can fold a ring; repair once more
        geoms[bad_out] = shapely.make_valid(geoms[bad_out])
    # stable sort: equal priorities keep source order; areas before lines of equal priority
    order = np.argsort(priorities, kind="stable")
    order = order[valid[order]]
    ids, counts = np.unique(class_ids[order], return_counts=True)
    return FeatureSet(crs, geoms[order], class_ids[order], priorities[order], heights[order],
                      repaired, skipped, {int(i): int(c) for i, c in zip(ids, counts)},
                      buildings=table.take(order))


def _half_widths_m(lonlat_geoms: np.ndarray, to_work: pyproj.Transformer) -> np.ndarray:
    """Half the short side of each polygon's minimum rotated rectangle, in ground metres (local UTM)."""
    out = np.full(len(lonlat_geoms), np.nan)
    polygonal = np.array([g is not None and g.geom_type in _AREA_TYPES for g in lonlat_geoms], dtype=bool)
    if not polygonal.any():
        return out
    rects = shapely.minimum_rotated_rectangle(_apply(to_work, lonlat_geoms[polygonal]))
    widths = np.full(len(rects), np.nan)
    is_rect = shapely.get_type_id(rects) == shapely.GeometryType.POLYGON  # degenerate shapes give lines or points
    if is_rect.any():  # the first three corners of each rectangle: its two side lengths
        xy, which = shapely.get_coordinates(shapely.get_exterior_ring(rects[is_rect]), return_index=True)
        first = np.searchsorted(which, np.arange(int(is_rect.sum())))
        c0, c1, c2 = xy[first], xy[first + 1], xy[first + 2]
        widths[is_rect] = np.minimum(np.hypot(*(c1 - c0).T), np.hypot(*(c2 - c1).T)) / 2.0
    out[polygonal] = widths
    return out


def _building_table(building_tags: list, lonlat_geoms: np.ndarray, to_work: pyproj.Transformer,
                    crs: pyproj.CRS) -> tuple[np.ndarray, BuildingTable]:
    """Top heights (NaN for non-buildings) and the BuildingTable of features in source order."""
    n = len(building_tags)
    is_building = np.array([t is not None for t in building_tags], dtype=bool)
    half_w = np.full(n, np.nan)
    jac = np.full((n, 2, 2), np.nan)
    if is_building.any():
        half_w[is_building] = _half_widths_m(lonlat_geoms[is_building], to_work)
        centres = shapely.centroid(lonlat_geoms[is_building])
        jac[is_building] = ground_jacobians(shapely.get_x(centres), shapely.get_y(centres), crs)
    items: list[BuildingHeights | None] = []
    notes: list[str] = []
    for tags, hw in zip(building_tags, half_w):
        if tags is None:
            items.append(None)
            continue
        b = building_heights(tags, half_width_m=float(hw) if np.isfinite(hw) else None)
        notes.extend(b.warnings)
        items.append(b)
    log_height_warnings(notes)
    tops = np.array([b.height_m if b is not None else np.nan for b in items], dtype=np.float32)
    return tops, BuildingTable.from_heights(items, jac)
