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

import dataclasses
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pyproj
import shapely
from shapely.strtree import STRtree

from .classes import Classified, Schema
from .coastline import sea_polygon
from .errors import SourceError
from .heights import (BuildingHeights, BuildingTable, building_heights, ground_jacobians, log_height_warnings,
                      tree_heights)
from .sources import RawLayer, SourceOptions, SourceReport

log = logging.getLogger("geogan")

_AREA_TYPES = {"Polygon", "MultiPolygon"}
_LINE_TYPES = {"LineString", "MultiLineString", "LinearRing"}
_POINT_TYPES = {"Point", "MultiPoint"}


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
    read: int = 0  # features in the sources read (classified or not)
    unclassified: tuple[str, ...] = ()  # non-OSM layers with features of which none got a class

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


# Field names that look like building heights (measured or estimated; several languages)
_HEIGHT_LIKE = re.compile(r"height|hoehe|höhe|hauteur|altezza|altura|hoogte|wysokosc|hgt|elev|^z$|^h$|^ht$|_ht$|^ht_",
                          re.IGNORECASE)
# OSM keys that heights.py reads itself
_OSM_HEIGHT_KEYS = {"height", "min_height", "roof:height", "building:levels", "building:min_level", "roof:levels"}


@dataclass(frozen=True)
class LayerHeightFields:
    """Where a non-OSM layer keeps building heights: the fields read as ``height`` (metres) and
    ``building:levels`` (storeys), and the fields that look like heights but are not used."""

    layer_fields: tuple[str, ...]
    height: str | None = None
    levels: str | None = None

    @classmethod
    def of(cls, layer: RawLayer, options: SourceOptions) -> "LayerHeightFields | None":
        """None for OSM layers and layers GDAL wrote from OSM (their tags follow OSM's semantics)."""
        if layer.is_osm or layer.osm_derived:
            return None
        names = tuple(dict.fromkeys(k for t in layer.tags for k in t))
        return cls(names, _field(names, options.height_field, "height"),
                   _field(names, options.levels_field, "building:levels"))

    @property
    def unused(self) -> list[str]:
        used = {self.height, self.levels, *_OSM_HEIGHT_KEYS}
        return [n for n in self.layer_fields if n not in used and _HEIGHT_LIKE.search(n)]

    def height_tags(self, tags: dict[str, str]) -> dict[str, str]:
        """``tags`` with the height and levels fields under the OSM keys heights.py reads."""
        out = dict(tags)
        for name, key in ((self.height, "height"), (self.levels, "building:levels")):
            if name is not None and name != key:
                out.pop(key, None)
                if name in tags:
                    out[key] = tags[name]
        return out

    def log(self, layer: RawLayer) -> None:
        height = self.height or ("height" if "height" in self.layer_fields else None)
        levels = self.levels or ("building:levels" if "building:levels" in self.layer_fields else None)
        if height or levels:
            log.info("layer '%s': building heights from field %s", layer.source,
                     " and ".join(f"'{n}'" for n in (height, levels) if n))
        else:
            log.info("layer '%s': no height field; buildings get default heights", layer.source)
        if self.unused:
            log.warning("layer '%s': field(s) %s look like heights but are not used; pass --height-field NAME "
                        "(or --levels-field NAME) to use one", layer.source,
                        ", ".join(f"'{n}'" for n in self.unused[:5]))


def _field(names: tuple[str, ...], chosen: str | None, key: str) -> str | None:
    """The field given for ``key`` when this layer has it, else one named ``key`` in another letter case."""
    if chosen is not None:
        return chosen if chosen in names else None
    return next((n for n in names if n.lower() == key and n != key), None)


def _check_fields(report: SourceReport, options: SourceOptions) -> None:
    """A height or levels field named by the user must exist in some non-OSM layer."""
    layers = [layer for layer in report.layers if not layer.is_osm]
    names = {k for layer in layers for t in layer.tags for k in t}
    for option, value in (("--height-field", options.height_field), ("--levels-field", options.levels_field)):
        if value is not None and layers and value not in names:
            known = ", ".join(sorted(names)[:20]) or "(none)"
            raise SourceError(f"no layer has values in the field '{value}' given to {option}; "
                              f"the fields are: {known}")


def _closed_part_as_area(geom, tags):
    """A closed way tagged ``building:part`` as a polygon (GDAL's osmconf.ini leaves it a line)."""
    if (geom.geom_type in ("LineString", "LinearRing") and "building:part" in tags and geom.is_closed
            and shapely.get_num_coordinates(geom) >= 4):
        return shapely.Polygon(geom.coords)
    return geom


@dataclass
class _Classified:
    """Features of a source report that have a class, in source order: areas, then lines and points to
    buffer (to their width; tree crowns to their diameter), and the coastline pieces seen.

    ``*_meta`` rows are ``(class_id, priority, role, tags)``; role "building" or "tree" (tags for heights), or None.
    """

    area_geoms: list = field(default_factory=list)
    area_meta: list = field(default_factory=list)
    line_geoms: list = field(default_factory=list)
    line_widths: list = field(default_factory=list)
    line_meta: list = field(default_factory=list)
    coast: list = field(default_factory=list)
    repaired: int = 0
    skipped: int = 0

    def add(self, geom, kind: str, cls: Classified, role: str | None, tags) -> None:
        """Add one classified feature (areas repaired when invalid, lines with under 2 points skipped)."""
        meta = (cls.class_id, cls.priority, role, tags if role else None)
        if kind == "area":
            if not geom.is_valid:
                geom = _polygonal(shapely.make_valid(geom))
                if geom is None:
                    self.skipped += 1
                    return
                self.repaired += 1
            self.area_geoms.append(geom)
            self.area_meta.append(meta)
        elif kind == "point":
            if cls.crown and cls.width_m:
                self.line_geoms.append(geom)
                self.line_widths.append(cls.width_m)
                self.line_meta.append(meta)
        else:
            if shapely.get_num_coordinates(geom) < 2:
                self.skipped += 1
                return
            self.line_geoms.append(geom)
            self.line_widths.append(cls.width_m or 1.0)
            self.line_meta.append(meta)


def _kind(geom) -> str | None:
    gtype = geom.geom_type
    return "area" if gtype in _AREA_TYPES else "line" if gtype in _LINE_TYPES else \
        "point" if gtype in _POINT_TYPES else None


def _layer_classifier(layer: RawLayer, schema: Schema, options: SourceOptions):
    """How the features of ``layer`` get their class: by their tags (OSM and OSM-derived layers, and any
    layer without --class / --class-field) or by the options."""
    if layer.is_osm:
        return schema.classify
    if options.class_name is not None:
        fixed = {kind: schema.classify_by_value(options.class_name, kind) for kind in ("area", "line")}
        return lambda tags, kind: fixed.get(kind)
    if options.class_field is not None:
        return lambda tags, kind: schema.classify_by_value(tags.get(options.class_field), kind) \
            if kind != "point" else None
    return schema.classify


def _classify(report: SourceReport, schema: Schema, options: SourceOptions) -> tuple[_Classified, list[str]]:
    """Every feature of ``report`` with a class, and the names of non-OSM layers whose features got none."""
    building_id = schema.by_name("building").id if "building" in schema.names else -1
    out = _Classified()
    unclassified: list[str] = []
    for layer in report.layers:
        classify = _layer_classifier(layer, schema, options)
        by_tags = classify == schema.classify
        fields = None if layer.is_osm else LayerHeightFields.of(layer, options)
        n_before, n_buildings = len(out.area_meta) + len(out.line_meta), 0
        for geom, tags in zip(layer.geometries, layer.tags):
            if layer.is_osm or layer.osm_derived:
                geom = _closed_part_as_area(geom, tags)
            kind = _kind(geom)
            if kind is None:
                continue
            if by_tags and tags.get("natural") == "coastline":
                out.coast.append(geom)
                continue
            cls = classify(tags, kind)
            if cls is None:
                continue
            role = "building" if cls.class_id == building_id else "tree" if cls.crown else None
            n_buildings += role == "building"
            out.add(geom, kind, cls, role, fields.height_tags(tags) if fields is not None and role else tags)
        if fields is not None and n_buildings:
            fields.log(layer)
        if not layer.is_osm and len(layer.tags) and len(out.area_meta) + len(out.line_meta) == n_before:
            unclassified.append(layer.source)
    return out, unclassified


def _sea(classified: _Classified, report: SourceReport, schema: Schema, options: SourceOptions):
    """The sea of the area read (lon/lat polygon from the coastline pieces), or None."""
    sea_cls = schema.sea()
    if sea_cls is None or not (classified.coast or options.sea_without_coast):
        return None
    bounds = report.bbox_lonlat
    if bounds is None:
        parts = [layer.geometries for layer in report.layers if len(layer.geometries)]
        if not parts:
            return None
        bounds = tuple(shapely.total_bounds(np.concatenate(parts)))
    area = shapely.box(*bounds)
    found = sea_polygon(classified.coast, area, sea_without_coast=options.sea_without_coast)
    if found.open_ends:
        log.warning("%d coastline end(s) stop inside the area (a cut extract or a gap in the coastline?): "
                    "carried on straight to its edge to draw the sea", found.open_ends)
    if found.sea.is_empty:
        return None
    diag = float(np.hypot(bounds[2] - bounds[0], bounds[3] - bounds[1]))
    # densified so the area's straight edges stay on the area after reprojection
    return shapely.segmentize(found.sea, max(diag / 1000.0, 1e-7)), sea_cls


def build_features(report: SourceReport, schema: Schema, crs: pyproj.CRS, center_lonlat: tuple[float, float],
                   class_field: SourceOptions | str | None = None) -> FeatureSet:
    """Classify, buffer and reproject all features of ``report`` into ``crs``.

    ``class_field``: :class:`~geogan.sources.SourceOptions` (how non-OSM layers get classes and
    heights), or the name of a class field.
    """
    return build_feature_sets(report, schema, (crs,), center_lonlat, class_field)[0]


def build_feature_sets(report: SourceReport, schema: Schema, crss, center_lonlat: tuple[float, float],
                       class_field: SourceOptions | str | None = None) -> tuple[FeatureSet, ...]:
    """:func:`build_features` of ``report`` in each CRS of ``crss``, classified, buffered and given heights
    once (the CRS-independent work; only reprojection and ground frames are done per CRS). Equal CRSs
    share one :class:`FeatureSet` (callers treat it as read-only)."""
    prepared = _prepare(report, schema, SourceOptions.of(class_field), center_lonlat)
    built: list[FeatureSet] = []
    for crs in crss:
        same = next((f for f in built if f.crs == crs), None)
        built.append(same if same is not None else _project(prepared, crs))
    return tuple(built)


@dataclass(frozen=True)
class _Prepared:
    """A report's classified features before a CRS is chosen: ``meta`` rows as in :class:`_Classified`,
    areas in lon/lat, lines and points buffered to their width in the local UTM zone ``work``, and the
    per-feature heights (``table`` without ground frames: those depend on the CRS)."""

    work: pyproj.CRS
    meta: list
    areas_lonlat: np.ndarray
    lines_work: np.ndarray
    lonlat_geoms: np.ndarray
    tops_m: np.ndarray
    table: BuildingTable | None
    repaired: int
    skipped: int
    read: int
    unclassified: tuple[str, ...]


def _prepare(report: SourceReport, schema: Schema, options: SourceOptions,
             center_lonlat: tuple[float, float]) -> _Prepared:
    _check_fields(report, options)
    work = utm_crs_for(*center_lonlat)
    to_work = _transformer("EPSG:4326", work)
    classified, unclassified = _classify(report, schema, options)
    sea = _sea(classified, report, schema, options)
    if sea is not None:
        classified.add(sea[0], "area", sea[1], None, None)
    meta = classified.area_meta + classified.line_meta
    lonlat_geoms = np.array(classified.area_geoms + classified.line_geoms, dtype=object)
    tops, table = None, None
    if len(meta):
        widths = np.r_[np.full(len(classified.area_geoms), np.nan), classified.line_widths]
        tops, table = _building_table(meta, lonlat_geoms, widths, to_work, schema)
    return _Prepared(work, meta, np.array(classified.area_geoms, dtype=object), _buffered_lines(classified, to_work),
                     lonlat_geoms, tops, table, classified.repaired, classified.skipped + report.dropped,
                     report.feature_count, tuple(unclassified))


def _project(prep: _Prepared, crs: pyproj.CRS) -> FeatureSet:
    """The prepared features in ``crs``: reprojected (folded rings repaired), sorted by drawing priority."""
    geoms = _in_output_crs(prep, _transformer(prep.work, crs), _transformer("EPSG:4326", crs))
    if not len(prep.meta):
        empty = np.zeros(0)
        return FeatureSet(crs, np.array([], dtype=object), empty.astype(np.uint8), empty.astype(np.int64),
                          empty.astype(np.float32), prep.repaired, prep.skipped, read=prep.read,
                          unclassified=prep.unclassified)
    class_ids = np.array([m[0] for m in prep.meta], dtype=np.uint8)
    priorities = np.array([m[1] for m in prep.meta], dtype=np.int64)
    table = _with_ground_frames(prep.table, prep.meta, prep.lonlat_geoms, crs)
    valid = ~shapely.is_empty(geoms) & shapely.is_valid_input(geoms)
    bad_out = ~shapely.is_valid(geoms)
    if bad_out.any():  # reprojection can fold a ring; repair once more
        geoms[bad_out] = shapely.make_valid(geoms[bad_out])
    # stable sort: equal priorities keep source order; areas before lines of equal priority
    order = np.argsort(priorities, kind="stable")
    order = order[valid[order]]
    ids, counts = np.unique(class_ids[order], return_counts=True)
    return FeatureSet(crs, geoms[order], class_ids[order], priorities[order], prep.tops_m[order],
                      prep.repaired, prep.skipped, {int(i): int(c) for i, c in zip(ids, counts)},
                      buildings=table.take(order), read=prep.read, unclassified=prep.unclassified)


def _buffered_lines(classified: _Classified, to_work) -> np.ndarray:
    """Lines and points buffered to half their width in local ground metres (the work CRS)."""
    if not classified.line_geoms:
        return np.array([], dtype=object)
    lines = _apply(to_work, np.array(classified.line_geoms, dtype=object))
    return shapely.buffer(lines, np.asarray(classified.line_widths) / 2.0, quad_segs=4)


def _in_output_crs(prep: _Prepared, work_to_out, lonlat_to_out) -> np.ndarray:
    """Areas and buffered lines (and points) reprojected, in that order."""
    polys = _apply(lonlat_to_out, prep.areas_lonlat)
    if not len(prep.lines_work):
        return polys
    return np.concatenate([polys, _apply(work_to_out, prep.lines_work)])


def coverage_warning(feats: FeatureSet) -> str | None:
    """The warning for a feature set that draws nothing (None when it draws something): features read but
    none classified is a different problem, with a different fix, from an area without features."""
    if len(feats):
        return None
    if feats.read and feats.unclassified:
        return (f"{feats.read} features read, none classified: pass --class NAME or --class-field FIELD "
                f"(layers: {', '.join(feats.unclassified[:3])}); rendering the area as background")
    if feats.read:
        return (f"{feats.read} features read, none of them mapped by the class rules; rendering the area as "
                "background")
    return "the bbox holds no mapped features; rendering it as background"


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


def _building_table(meta: list, lonlat_geoms: np.ndarray, widths_m: np.ndarray, to_work: pyproj.Transformer,
                    schema: Schema) -> tuple[np.ndarray, BuildingTable]:
    """Top heights (NaN for features without one) and the BuildingTable of features in source order:
    buildings from their tags, trees from theirs (a crown ``widths_m`` across). Its ground frames are NaN
    (:func:`_with_ground_frames` sets them for a CRS)."""
    n = len(meta)
    is_building = np.array([m[2] == "building" for m in meta], dtype=bool)
    half_w = np.full(n, np.nan)
    if is_building.any():
        half_w[is_building] = _half_widths_m(lonlat_geoms[is_building], to_work)
    items: list[BuildingHeights | None] = []
    notes: list[str] = []
    for (_, _, role, tags), hw, width, geom in zip(meta, half_w, widths_m, lonlat_geoms):
        if role == "tree":
            items.append(tree_heights(tags, float(width), schema.tree_height_m, row=geom.geom_type != "Point"))
            continue
        if role != "building":
            items.append(None)
            continue
        b = building_heights(tags, half_width_m=float(hw) if np.isfinite(hw) else None)
        notes.extend(b.warnings)
        items.append(b)
    log_height_warnings(notes)
    tops = np.array([b.height_m if b is not None else np.nan for b in items], dtype=np.float32)
    return tops, BuildingTable.from_heights(items, np.full((n, 2, 2), np.nan))


def _with_ground_frames(table: BuildingTable, meta: list, lonlat_geoms: np.ndarray, crs: pyproj.CRS) -> BuildingTable:
    """``table`` with the ground frame (:func:`~geogan.heights.ground_jacobians` in ``crs``) of every feature
    that has a height."""
    has_height = np.array([m[2] is not None for m in meta], dtype=bool)
    jac = np.full((len(meta), 2, 2), np.nan)
    if has_height.any():
        centres = shapely.centroid(lonlat_geoms[has_height])
        jac[has_height] = ground_jacobians(shapely.get_x(centres), shapely.get_y(centres), crs)
    return dataclasses.replace(table, ground_jacobians=jac)
