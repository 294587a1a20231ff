"""Reading vector sources: OSM (.osm/.osm.pbf via GDAL's OSM driver), GPKG,
GeoJSON and Shapefile, through pyogrio, restricted to a bbox.

The result is a list of :class:`RawLayer`: geometries in EPSG:4326 with one
tag dictionary per feature. Classification and reprojection into the output
grid happen in ``features.py``.
"""

from __future__ import annotations

import logging
import math
import re
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyogrio
import pyproj
import shapely

from .errors import SourceError
from .gpkg import GpkgTable, gpkg_tables, read_tables
from .pbf import pbf_problem

log = logging.getLogger("geogan")

OSM_SUFFIXES = (".osm", ".pbf", ".osm.pbf", ".o5m")
OSM_LAYERS = ("points", "lines", "multipolygons")
# Layers GDAL's OSM driver writes (ogr2ogr from .osm/.pbf) that geogan does not read from OSM files either:
# route and other relations, drawn by their member ways already.
OSM_UNREAD_LAYERS = ("multilinestrings", "other_relations")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".gml", ".kml", ".sqlite")
_OTHER_TAGS = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
# OSM driver columns that are bookkeeping, not tags.
_NOT_TAGS = {"osm_id", "osm_way_id", "other_tags", "z_order", "fid"}


@dataclass
class RawLayer:
    """Features of one source layer, in EPSG:4326."""

    source: str
    geometries: np.ndarray  # shapely geometries (object array)
    tags: list[dict[str, str]]
    is_osm: bool
    dropped: int = 0  # features whose geometry GDAL could not build
    ids: list[str | None] = field(default_factory=list)  # OSM "way/1", "relation/2", "node/3" (OSM sources)
    osm_derived: bool = False  # a non-OSM layer written from OSM by GDAL (an other_tags or osm_id column)

    @property
    def name(self) -> str:
        """The layer's name (``source`` is "file:layer")."""
        return self.source.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class SourceOptions:
    """How features of non-OSM layers (GPKG, GeoJSON, Shapefile ...) are classified and given heights.

    ``class_name``: every feature of those layers gets this class (e.g. "building"); ``class_field``:
    the attribute holding each feature's class name or id (one of the two, or neither: classify by OSM
    tags, as for OSM files); ``height_field`` / ``levels_field``: the attributes holding building heights
    in metres / storeys (None: a field named ``height`` in any letter case, resp. ``building:levels``);
    ``sea_without_coast``: an area no coastline crosses is all sea (default: land, see
    :mod:`geogan.coastline`).
    """

    class_name: str | None = None
    class_field: str | None = None
    height_field: str | None = None
    levels_field: str | None = None
    sea_without_coast: bool = False

    def __post_init__(self) -> None:
        for key in ("class_name", "class_field", "height_field", "levels_field"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SourceError(f"{key} must be a non-empty name, not {value!r}")
        if self.class_name is not None and self.class_field is not None:
            raise SourceError("give either a class for every feature (--class) or a class field (--class-field), "
                              "not both")

    @classmethod
    def of(cls, value: "SourceOptions | str | None") -> "SourceOptions":
        """Options from a value the API passes through: options, a class field name (the older
        ``class_field`` parameter) or None."""
        if isinstance(value, SourceOptions):
            return value
        return cls(class_field=value)


@dataclass
class SourceReport:
    layers: list[RawLayer] = field(default_factory=list)
    bbox_lonlat: tuple[float, float, float, float] | None = None  # the area read (None: everything)

    @property
    def feature_count(self) -> int:
        return sum(len(layer.tags) for layer in self.layers)

    @property
    def dropped(self) -> int:
        return sum(layer.dropped for layer in self.layers)


def is_osm_path(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(OSM_SUFFIXES)


def parse_other_tags(text: object) -> dict[str, str]:
    """Parse GDAL's hstore-like ``other_tags`` column: ``"k"=>"v","k2"=>"v2"``."""
    if not text or not isinstance(text, str):
        return {}
    return {k.replace('\\"', '"'): v.replace('\\"', '"') for k, v in _OTHER_TAGS.findall(text)}


def _check_file(path: Path) -> None:
    """Refuse, before GDAL opens it, an input that is missing, not a regular file, empty or cut short."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceError(f"input '{path}' does not exist; check the path given to --osm") from None
    except OSError as exc:
        raise SourceError(f"cannot read input '{path}' ({_short(exc)}); check the path and its permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"input '{path}' is {_file_kind(st.st_mode)}, not a regular file; "
                          "give an OSM/GPKG/GeoJSON/Shapefile file (save a stream to a file first)")
    if st.st_size == 0:
        raise SourceError(f"input '{path}' is empty; give an OSM/GPKG/GeoJSON/Shapefile with features")
    name = path.name.lower()
    if name.endswith(".osm"):
        _check_osm_xml(path, st.st_size)
    elif name.endswith(".pbf"):
        problem = pbf_problem(path)
        if problem:
            raise SourceError(f"input '{path}' is not a complete OSM PBF: {problem}; download or export it again")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((text for test, text in kinds if test(mode)), "not a regular file")


_OSM_XML_END = re.compile(rb"(</osm>|<osm\b[^>]*/>)\s*$")


def _check_osm_xml(path: Path, size: int) -> None:
    """An OSM XML file must start with <osm and end with </osm> (GDAL reads a cut-short file's prefix)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
        fh.seek(max(0, size - 1024))
        tail = fh.read()
    if b"<osm" not in head:
        raise SourceError(f"input '{path}' is named .osm but is not OSM XML; export it again from OSM "
                          "or rename it to its real format")
    if not _OSM_XML_END.search(tail):
        raise SourceError(f"input '{path}' is not a complete OSM XML file: it does not end with </osm> "
                          "(cut short?); download or export it again")


def _layer_names(path: Path) -> list[str]:
    if is_osm_path(path):
        return list(OSM_LAYERS)
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise SourceError(f"cannot open '{path}' as a vector file ({_short(exc)}); "
                          "use OSM .osm/.pbf, GPKG, GeoJSON or Shapefile") from None
    return [str(name) for name, geom_type in layers if geom_type is not None]


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _bbox_in_layer_crs(bbox_lonlat: tuple[float, float, float, float] | None,
                       layer_crs: str | None) -> tuple[float, float, float, float] | None:
    if bbox_lonlat is None:
        return None
    if layer_crs is None:
        return bbox_lonlat
    crs = pyproj.CRS.from_user_input(layer_crs)
    if crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return bbox_lonlat
    t = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return tuple(t.transform_bounds(*bbox_lonlat, densify_pts=11))  # type: ignore[return-value]


@contextmanager
def osm_tmp_size(path: Path) -> Iterator[None]:
    """GDAL's OSM driver indexes nodes in an in-memory database of up to OSM_MAX_TMPFILE_SIZE MB
    (default 100) before moving it to disk; setting it up at 100 MB costs more than parsing a small
    file (0.14 s vs 0.03 s for the sample town). Size it to the file: 8x the file size, 4..100 MB."""
    key = "OSM_MAX_TMPFILE_SIZE"
    before = pyogrio.get_gdal_config_option(key)
    if before is not None or not is_osm_path(path):
        yield  # the user's own setting wins
        return
    size_mb = path.stat().st_size / 2**20 if path.is_file() else 100
    pyogrio.set_gdal_config_options({key: str(int(min(100, max(4, math.ceil(8 * size_mb)))))})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({key: None})


def read_layer(path: Path, layer: str, bbox_lonlat: tuple[float, float, float, float] | None,
               class_field: str | None) -> RawLayer:
    osm = is_osm_path(path)
    try:
        info = pyogrio.read_info(path, layer=layer, force_total_bounds=True) if not osm else {"crs": "EPSG:4326"}
        layer_crs = info.get("crs")
        if not osm:
            _check_has_geometry(path, layer, info.get("features"), info.get("total_bounds"))
            layer_crs = _check_declared_crs(path, layer, layer_crs, info.get("total_bounds"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with osm_tmp_size(path):
                meta, _, wkb, fields = pyogrio.raw.read(
                    path, layer=layer, bbox=_bbox_in_layer_crs(bbox_lonlat, layer_crs))
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"cannot read layer '{layer}' of '{path}' ({_short(exc)}); "
                          "check that the file is complete and in a supported format") from None
    names = list(meta["fields"])
    _check_class_field(path, layer, class_field, names)
    geoms = shapely.from_wkb(wkb, on_invalid="ignore") if wkb is not None else np.array([], dtype=object)
    n = len(geoms)
    tags: list[dict[str, str]] = []
    for i in range(n):
        t: dict[str, str] = {}
        for name, column in zip(names, fields):
            if osm and name in _NOT_TAGS:  # other layers: see _without_bookkeeping
                continue
            value = column[i]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            t[name] = str(value) if not isinstance(value, (int, np.integer)) else str(int(value))
        if osm and "other_tags" in names:
            t.update(parse_other_tags(fields[names.index("other_tags")][i]))
        tags.append(t)
    ids = _osm_ids(layer, names, fields, n) if osm else [None] * n
    return _raw_layer(path, layer, geoms, tags, ids, osm, layer_crs)


def _raw_layer(path: Path, layer: str, geoms: np.ndarray, tags: list[dict[str, str]], ids: list[str | None],
               osm: bool, layer_crs: str | None) -> RawLayer:
    """Features in EPSG:4326, without those whose geometry is missing or empty (counted as dropped)."""
    missing = np.asarray(shapely.is_missing(geoms) | shapely.is_empty(geoms), dtype=bool)
    if layer_crs and len(geoms):
        crs = pyproj.CRS.from_user_input(layer_crs)
        if not crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
            t = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
            ok = ~missing
            geoms[ok] = shapely.transform(geoms[ok], lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    keep = ~missing
    derived = not osm and any("other_tags" in t or "osm_id" in t or "osm_way_id" in t for t in tags)
    tags = tags if osm else [_without_bookkeeping(t) for t in tags]
    return RawLayer(f"{path.name}:{layer}", geoms[keep], [t for t, k in zip(tags, keep) if k], osm,
                    dropped=int(missing.sum()), ids=[i for i, k in zip(ids, keep) if k], osm_derived=derived)


def _without_bookkeeping(tags: dict[str, str]) -> dict[str, str]:
    """The tags of a feature GDAL wrote from OSM: its ``other_tags`` column parsed into tags (whatever
    the format: GPKG, GeoJSON, Shapefile ...) and the driver's bookkeeping columns left out."""
    out = {k: v for k, v in tags.items() if k not in _NOT_TAGS}
    out.update(parse_other_tags(tags.get("other_tags")))
    return out


def _check_class_field(path: Path, layer: str, class_field: "SourceOptions | str | None",
                       names: Sequence[str]) -> None:
    class_field = SourceOptions.of(class_field).class_field
    if class_field is not None and class_field not in names:
        raise SourceError(f"layer '{layer}' of '{path}' has no field '{class_field}'; "
                          f"its fields are: {', '.join(names) or '(none)'}")


def _check_osm_class_field(paths: Sequence[str | Path], class_field: "SourceOptions | str | None") -> None:
    """``--class-field`` with only OSM files (classified by their tags; other layers check the field
    themselves): a field none of their layers has is an error naming the fields there are, one they have
    is a warning that it is not used."""
    name = SourceOptions.of(class_field).class_field
    if name is None or not paths or not all(is_osm_path(Path(p)) for p in paths):
        return
    fields: dict[str, None] = {}
    for p in paths:
        _check_file(Path(p))
        for layer in OSM_LAYERS:
            try:
                fields.update(dict.fromkeys(str(f) for f in pyogrio.read_info(p, layer=layer)["fields"]))
            except Exception:  # noqa: BLE001 - reading the layer reports it
                continue
    names = [f for f in fields if f not in _NOT_TAGS]
    if name not in fields:
        raise SourceError(f"--class-field '{name}': the OSM input has no such field (its fields are: "
                          f"{', '.join(names) or '(none)'}); OSM files are classified by their tags, so leave "
                          "--class-field out, or give it with GPKG/GeoJSON/Shapefile layers that have the field")
    log.warning("--class-field '%s' is not used: OSM files are classified by their tags (it classifies "
                "GPKG/GeoJSON/Shapefile layers)", name)


def _check_has_geometry(path: Path, layer: str, n_features: int | None, bounds) -> None:
    """A layer with features but no extent holds only null or empty geometries: say so (its infinite
    'bounds' are not coordinates in a wrong CRS)."""
    if n_features is not None and n_features > 0 and (bounds is None or not all(np.isfinite(bounds))):
        raise _no_geometry(path, layer, f"its {n_features} feature(s)")


def _no_geometry(path: Path, layer: str, what: str) -> SourceError:
    return SourceError(f"layer '{layer}' of '{path}': {what} have only empty or null geometries, so there is "
                       "nothing to draw; fix the geometries or remove the layer")


def _read_gpkg(path: Path, tables: list[GpkgTable], bbox_lonlat: tuple[float, float, float, float] | None,
               class_field: str | None) -> list[RawLayer] | None:
    """All feature layers of a GeoPackage, one GDAL open per CRS (see :mod:`geogan.gpkg`); None when the
    one-query read fails, for the caller to read the file layer by layer."""
    crs_of: dict[str, str] = {}
    read: dict[str, tuple[np.ndarray, list]] = {}
    try:
        for t in tables:
            if t.has_rows and not t.has_geometries:
                raise _no_geometry(path, t.name, "its features")
            crs_of[t.name] = _check_declared_crs(path, t.name, t.crs, t.bounds)
            _check_class_field(path, t.name, class_field, t.fields)
        bboxes = {crs: _bbox_in_layer_crs(bbox_lonlat, crs) for crs in dict.fromkeys(crs_of.values())}
    except SourceError:
        raise
    except Exception as exc:  # a CRS pyproj cannot parse ...
        raise SourceError(f"cannot read the layers of '{path}' ({_short(exc)}); "
                          "check that the file is complete and in a supported format") from None
    try:
        for crs, bbox in bboxes.items():
            read.update(read_tables(path, [t for t in tables if crs_of[t.name] == crs], bbox))
    except Exception as exc:  # pyogrio's errors: an unusual GeoPackage the one-query read cannot take
        log.debug("reading '%s' in one query failed (%s); reading it layer by layer", path, _short(exc))
        return None
    layers = []
    for t in tables:
        wkb, tags = read[t.name]
        geoms = shapely.from_wkb(wkb, on_invalid="ignore") if len(wkb) else np.array([], dtype=object)
        layers.append(_raw_layer(path, t.name, geoms, tags, [None] * len(tags), False, crs_of[t.name]))
    return layers


def _osm_ids(layer: str, names: list[str], fields, n: int) -> list[str | None]:
    """OSM object ids ("way/12", "relation/3", "node/7") from GDAL's osm_id / osm_way_id columns."""
    def column(name):
        return fields[names.index(name)] if name in names else [None] * n

    kind = "node" if layer == "points" else "way" if layer in ("lines", "multilinestrings") else "relation"
    way_ids, osm_ids = column("osm_way_id"), column("osm_id")
    out: list[str | None] = []
    for way_id, osm_id in zip(way_ids, osm_ids):
        if way_id not in (None, ""):
            out.append(f"way/{way_id}")
        elif osm_id not in (None, ""):
            out.append(f"{kind}/{osm_id}")
        else:
            out.append(None)
    return out


def _check_declared_crs(path: Path, layer: str, layer_crs: str | None, bounds) -> str:
    """Catch a layer whose coordinates do not fit its declared (or missing) CRS."""
    degree_like = bounds is not None and all(np.isfinite(bounds)) and \
        -180.5 <= bounds[0] and bounds[2] <= 180.5 and -90.5 <= bounds[1] and bounds[3] <= 90.5
    if layer_crs is None:
        if bounds is None or not all(np.isfinite(bounds)) or degree_like:
            log.warning("layer '%s' of '%s' declares no CRS; assuming EPSG:4326 (lon/lat)", layer, path.name)
            return "EPSG:4326"
        raise SourceError(f"layer '{layer}' of '{path}' declares no CRS and its coordinates are not degrees; "
                          "assign its CRS (e.g. ogr2ogr -a_srs EPSG:32635 out.gpkg in.shp)")
    if pyproj.CRS.from_user_input(layer_crs).is_geographic and bounds is not None and not degree_like:
        raise SourceError(f"layer '{layer}' of '{path}' declares {layer_crs} (degrees) but its coordinates reach "
                          f"{max(abs(float(b)) for b in bounds):.0f}; it is in another CRS: assign the right one "
                          "(e.g. ogr2ogr -a_srs EPSG:3857 out.geojson in.geojson)")
    return layer_crs


def read_sources(paths: Sequence[str | Path], bbox_lonlat: tuple[float, float, float, float] | None,
                 class_field: SourceOptions | str | None = None) -> SourceReport:
    """Read every usable layer of every path, keeping features inside ``bbox_lonlat``.

    OSM files are read from their ``points``, ``lines`` and ``multipolygons`` layers with
    the driver's spatial filter; other formats from all their vector layers but those GDAL
    writes from OSM relations (``multilinestrings``, ``other_relations``: not read from OSM
    files either). ``class_field``: :class:`SourceOptions`, or the name of a class field.
    """
    report = SourceReport(bbox_lonlat=None if bbox_lonlat is None else tuple(bbox_lonlat))
    _check_osm_class_field(paths, class_field)
    for p in paths:
        path = Path(p)
        _check_file(path)
        tables = gpkg_tables(path) if path.name.lower().endswith(".gpkg") else None
        layers = _read_gpkg(path, tables, bbox_lonlat, class_field) if tables is not None else None
        if layers is not None:
            report.layers.extend(layer for layer in layers if not _osm_relation_layer(layer))
            continue
        for layer in _layer_names(path):
            raw = read_layer(path, layer, bbox_lonlat, class_field if not is_osm_path(path) else None)
            if not _osm_relation_layer(raw):
                report.layers.append(raw)
    if all(layer.is_osm for layer in report.layers) and report.layers:
        _check_osm_not_garbage(paths, report)
    return report


def _osm_relation_layer(layer: RawLayer) -> bool:
    return layer.osm_derived and layer.name in OSM_UNREAD_LAYERS


def _check_osm_not_garbage(paths: Sequence[str | Path], report: SourceReport) -> None:
    """A .pbf that GDAL reads as empty may be truncated; say so instead of rendering nothing."""
    if report.feature_count:
        return
    for p in paths:
        path = Path(p)
        if path.name.lower().endswith(".pbf"):
            try:
                pyogrio.read_info(path, layer="points")
            except Exception as exc:
                raise SourceError(f"input '{path}' is not a readable OSM PBF ({_short(exc)}); "
                                  "download or export it again") from None


def data_bounds_lonlat(report: SourceReport) -> tuple[float, float, float, float]:
    """Bounds of all features (used when no bbox is given)."""
    geoms = [layer.geometries for layer in report.layers if len(layer.geometries)]
    if not geoms:
        raise SourceError("the input has no features to take a bbox from; pass --bbox")
    b = shapely.total_bounds(np.concatenate(geoms))
    return tuple(float(v) for v in b)  # type: ignore[return-value]


def osm_file_bounds(path: Path) -> tuple[float, float, float, float] | None:
    """The <bounds> element of an OSM XML file, if it has one."""
    if not path.name.lower().endswith(".osm"):
        return None
    with open(path, "rb") as fh:
        head = fh.read(8192).decode("utf-8", "replace")
    m = re.search(r"<bounds\s+([^>]*)/?>", head)
    if not m:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    try:
        return (float(attrs["minlon"]), float(attrs["minlat"]), float(attrs["maxlon"]), float(attrs["maxlat"]))
    except (KeyError, ValueError):
        return None
