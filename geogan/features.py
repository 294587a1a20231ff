"""Classified features in the output CRS, ready to rasterize.

Turns the raw layers from ``sources.py`` into polygons (lines are buffered to
their width in metres in a local UTM zone, so widths are ground metres in any
output CRS) with a class id, a drawing priority and, for buildings, a height.
Broken geometries (rings with too few points, self-intersections) are repaired
or skipped and counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj
import shapely
from shapely.strtree import STRtree

from .classes import Schema
from .heights import building_height_m
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
    heights_m: np.ndarray  # float32, NaN where the class has no height of its own
    repaired: int = 0
    skipped: int = 0
    counts_by_class: dict[int, int] = field(default_factory=dict)
    _tree: STRtree | None = None

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

    # the ClassSource interface used by render.py (a sketch raster offers the same two methods)
    def classes(self, grid) -> np.ndarray:
        from .rasterizer import rasterize_classes
        return rasterize_classes(self, grid)

    def object_heights(self, grid) -> np.ndarray:
        from .rasterizer import rasterize_heights
        return rasterize_heights(self, grid)


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


def build_features(report: SourceReport, schema: Schema, crs: pyproj.CRS, center_lonlat: tuple[float, float],
                   class_field: str | None = None) -> FeatureSet:
    """Classify, buffer and reproject all features of ``report`` into ``crs``."""
    work = utm_crs_for(*center_lonlat)
    to_work = _transformer("EPSG:4326", work)
    work_to_out = _transformer(work, crs)
    lonlat_to_out = _transformer("EPSG:4326", crs)
    building_id = schema.by_name("building").id

    area_geoms, line_geoms, line_widths = [], [], []
    area_meta, line_meta = [], []  # (class_id, priority, height)
    skipped = repaired = 0
    for layer in report.layers:
        for geom, tags in zip(layer.geometries, layer.tags):
            gtype = geom.geom_type
            kind = "area" if gtype in _AREA_TYPES else "line" if gtype in _LINE_TYPES else None
            if kind is None:
                continue
            if class_field is not None and not layer.is_osm:
                cls = schema.classify_by_value(tags.get(class_field), kind)
            else:
                cls = schema.classify(tags, kind)
            if cls is None:
                continue
            height = building_height_m(tags) if cls.class_id == building_id else np.nan
            if kind == "area":
                if not geom.is_valid:
                    geom = _polygonal(shapely.make_valid(geom))
                    if geom is None:
                        skipped += 1
                        continue
                    repaired += 1
                area_geoms.append(geom)
                area_meta.append((cls.class_id, cls.priority, height))
            else:
                if shapely.get_num_coordinates(geom) < 2:
                    skipped += 1
                    continue
                line_geoms.append(geom)
                line_widths.append(cls.width_m or 1.0)
                line_meta.append((cls.class_id, cls.priority, height))

    skipped += report.dropped
    polys = _apply(lonlat_to_out, np.array(area_geoms, dtype=object))
    if line_geoms:
        lines = _apply(to_work, np.array(line_geoms, dtype=object))
        buffered = shapely.buffer(lines, np.asarray(line_widths) / 2.0, quad_segs=4)
        buffered = _apply(work_to_out, buffered)
    else:
        buffered = np.array([], dtype=object)
    geoms = np.concatenate([polys, buffered]) if len(buffered) else polys
    meta = area_meta + line_meta
    if geoms is None or not len(meta):
        empty = np.zeros(0)
        return FeatureSet(crs, np.array([], dtype=object), empty.astype(np.uint8), empty.astype(np.int64),
                          empty.astype(np.float32), repaired, skipped)
    class_ids = np.array([m[0] for m in meta], dtype=np.uint8)
    priorities = np.array([m[1] for m in meta], dtype=np.int64)
    heights = np.array([m[2] for m in meta], dtype=np.float32)
    valid = ~shapely.is_empty(geoms) & shapely.is_valid_input(geoms)
    bad_out = ~shapely.is_valid(geoms)
    if bad_out.any():  # reprojection can fold a ring; repair once more
        geoms[bad_out] = shapely.make_valid(geoms[bad_out])
    # stable sort: equal priorities keep source order; areas before lines of equal priority
    order = np.argsort(priorities, kind="stable")
    order = order[valid[order]]
    ids, counts = np.unique(class_ids[order], return_counts=True)
    return FeatureSet(crs, geoms[order], class_ids[order], priorities[order], heights[order],
                      repaired, skipped, {int(i): int(c) for i, c in zip(ids, counts)})
