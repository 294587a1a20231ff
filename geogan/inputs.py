"""A render's inputs: vector sources (files, GeoDataFrames, Overpass) or a sketch, opened and read onto a grid.

:func:`open_sources` checks what the user gave (paths, GeoDataFrames, lists of both) and writes frames to
temporary GeoPackages; :func:`area_grid` builds the output grid (the one place a render's grid is made:
from the bbox, or from the data's extent when there is none); :func:`class_source` reads the features on
the grid plus a margin of tile context (or places the sketch). The wiring is :mod:`geogan.core`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pyproj

from .classes import Schema
from .errors import InputError, SourceError
from .features import FeatureSet, build_feature_sets, build_features, coverage_warning
from .grid import Grid, grid_from_bbox
from .overpass import clip_large_osm, fetch_osm
from .rasterizer import VectorClassSource
from .settings import AreaSettings, BBox, OsmFetch, ProgressFn, SourceSettings
from .sketch import ClassSource, sketch_source
from .sources import SourceOptions, data_bounds_lonlat, is_osm_path, osm_file_bounds, read_sources

log = logging.getLogger("geogan")


def sample_osm_path() -> Path:
    """The bundled fictional sample town (OSM XML)."""
    return Path(str(resources.files("geogan").joinpath("data/sample/sample_town.osm")))


# ---------------------------------------------------------------- what the user gave
def _frame_kind(obj) -> str | None:
    """"geo" for a GeoDataFrame, "plain" for a pandas DataFrame or Series, None for anything else."""
    names = {(cls.__module__.split(".")[0], cls.__name__) for cls in type(obj).__mro__}
    if ("geopandas", "GeoDataFrame") in names:
        return "geo"
    if ("pandas", "DataFrame") in names or ("pandas", "Series") in names:
        return "plain"
    return None


def _source_kind(item, where: str) -> str:
    """"path" or "geo" for one vector source, or a one-line InputError."""
    kind = _frame_kind(item)
    if kind == "plain":
        raise InputError(f"{where} is a pandas {type(item).__name__} without geometries; make it a GeoDataFrame "
                         "(geopandas.GeoDataFrame(df, geometry=..., crs='EPSG:4326')) or pass a file path")
    if kind is None and not isinstance(item, (str, os.PathLike)):
        raise InputError(f"{where} is a {type(item).__name__}; give a vector file path, a GeoDataFrame, "
                         "or a list of them")
    return kind or "path"


def _write_frames(items: list, kinds: list[str]):
    """Paths for ``items``, GeoDataFrames written to GeoPackages in a temporary directory (returned too)."""
    import tempfile

    import pyogrio
    tmp = tempfile.TemporaryDirectory(prefix="geogan-src-")
    paths = []
    for i, (item, kind) in enumerate(zip(items, kinds)):
        if kind == "path":
            paths.append(Path(item))
            continue
        paths.append(Path(tmp.name) / f"layer{i}.gpkg")
        pyogrio.write_dataframe(item, paths[-1], layer="features")
    return paths, tmp


def materialize_sources(osm, class_field: str | None, default_field: bool = True):
    """Check the vector sources; GeoDataFrames (alone, or in a list with each other and with paths) become
    temporary GeoPackages, kept alive by the returned handle. Returns ``(osm, class_field, handle)``;
    ``default_field``: frames that all have a ``class`` column are classified by it when no field is given."""
    if osm is None:
        return osm, class_field, None
    single = isinstance(osm, (str, os.PathLike)) or _frame_kind(osm) is not None
    if not single and not isinstance(osm, (list, tuple)):
        _source_kind(osm, "osm")  # raises for anything but a path or a frame
    items = [osm] if single else list(osm)
    kinds = [_source_kind(item, "osm" if single else f"osm[{i}]") for i, item in enumerate(items)]
    if "geo" not in kinds:
        return osm, class_field, None
    for i, (item, kind) in enumerate(zip(items, kinds)):
        if kind == "geo" and item.crs is None:
            where = "the GeoDataFrame" if single else f"the GeoDataFrame osm[{i}]"
            raise InputError(f"{where} has no CRS; set one with gdf.set_crs('EPSG:4326') (or the right EPSG)")
    paths, tmp = _write_frames(items, kinds)
    if class_field is None and default_field and all(kind == "geo" and "class" in item.columns
                                                      for item, kind in zip(items, kinds)):
        class_field = "class"
    return paths, class_field, tmp


def as_paths(osm) -> list[Path]:
    if osm is None:
        return []
    if isinstance(osm, (str, os.PathLike)):
        return [Path(osm)]
    return [Path(p) for p in osm]


@dataclass
class OpenSources:
    """Sources ready to read: file paths (none: fetch from Overpass, or the sketch), the class field, the
    sketch, the OSM fetch settings; ``keep`` holds the temporary GeoPackages of GeoDataFrames alive."""

    paths: list[Path]
    class_field: SourceOptions | str | None = None  # how non-OSM layers are classified (read_sources takes both)
    sketch: Path | None = None
    fetch: OsmFetch = field(default_factory=OsmFetch)
    keep: object = None


def open_sources(settings: SourceSettings) -> OpenSources:
    opts = settings.source_options()
    osm, class_field, keep = materialize_sources(settings.osm, opts.class_field, default_field=opts.class_name is None)
    opts = opts if class_field == opts.class_field else dataclasses.replace(opts, class_field=class_field)
    return OpenSources(as_paths(osm), opts, settings.sketch, settings.fetch, keep)


# ---------------------------------------------------------------- the grid
def resolve_sources(paths: list[Path], bbox: BBox | None, bbox_crs: str) -> tuple[list[Path], BBox | None, str]:
    """The paths and the bbox to render: the sample town when neither is given, a lone OSM file's bounds
    when it has them and no bbox is given."""
    if not paths:
        if bbox is not None:
            return [], bbox, bbox_crs  # fetched from Overpass once the grid is known (or a sketch)
        sample = sample_osm_path()
        bounds = osm_file_bounds(sample)
        return [sample], bounds, "EPSG:4326"
    if bbox is None and len(paths) == 1:
        bounds = osm_file_bounds(paths[0]) if paths[0].is_file() else None
        if bounds is not None:
            return paths, bounds, "EPSG:4326"
    return paths, bbox, bbox_crs


def area_grid(paths: list[Path], area: AreaSettings, gsd_m: float,
              class_field: str | None = None) -> tuple[list[Path], Grid]:
    """The sources to read and the output grid (reads the data only when no bbox is known): pixels of
    ``area.res`` CRS units when set, else of ``gsd_m`` ground metres; snapped with ``area.tap``."""
    paths, bbox, bbox_crs = resolve_sources(paths, area.bbox, area.bbox_crs)
    if bbox is None:
        report = read_sources(paths, None, class_field)
        bbox, bbox_crs = data_bounds_lonlat(report), "EPSG:4326"
    if area.res is not None:
        return paths, grid_from_bbox(tuple(bbox), bbox_crs, area.crs, res=area.res, tap=area.tap)  # type: ignore
    return paths, grid_from_bbox(tuple(bbox), bbox_crs, area.crs, gsd_m, tap=area.tap)  # type: ignore[arg-type]


def margin_bbox_lonlat(grid: Grid, margin_px: int) -> BBox:
    """Grid bounds plus a margin (tile context beyond the edges), in lon/lat."""
    left, bottom, right, top = grid.bounds
    rx, ry = grid.res_xy
    box = (left - margin_px * rx, bottom - margin_px * ry, right + margin_px * rx, top + margin_px * ry)
    t = pyproj.Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return tuple(float(v) for v in t.transform_bounds(*box, densify_pts=21))  # type: ignore[return-value]


# ---------------------------------------------------------------- reading onto the grid
def _local_or_fetched(paths: list[Path], margin_bbox: BBox, schema: Schema, fetch: OsmFetch,
                      progress: ProgressFn | None) -> list[Path]:
    """With no paths, the area fetched from Overpass (cached); else large OSM files clipped to it (cached)."""
    if not paths:
        return [fetch_osm(margin_bbox, schema, url=fetch.url, cache_dir=fetch.cache_dir, use_cache=fetch.use_cache,
                          progress=progress)]
    return [clip_large_osm(p, margin_bbox, cache_dir=fetch.cache_dir, use_cache=fetch.use_cache)
            if p.is_file() and is_osm_path(p) else p for p in paths]


def _feature_warnings(feats: FeatureSet, schema: Schema) -> list[str]:
    warnings_: list[str] = []
    if len(feats) == 0:
        warnings_.append(coverage_warning(feats))
    if feats.repaired or feats.skipped:
        warnings_.append(f"{feats.repaired} broken geometries repaired, {feats.skipped} skipped (unclosed or "
                         "clipped rings)")
    for msg in warnings_:
        log.warning(msg)
    log.info("%d features drawn: %s", len(feats),
             ", ".join(f"{schema.by_id(k).name} {v}" for k, v in sorted(feats.counts_by_class.items())))
    return warnings_


def _read_report(paths: list[Path], margin_bbox: BBox, schema: Schema, class_field, fetch: OsmFetch,
                 progress: ProgressFn | None):
    """The sources read on ``margin_bbox`` (lon/lat): fetched from Overpass when there are no paths."""
    fetched = not paths
    paths = _local_or_fetched(paths, margin_bbox, schema, fetch, progress)
    try:
        return read_sources(paths, margin_bbox, class_field)
    except SourceError as exc:
        if fetched:
            raise SourceError(f"{exc} (the Overpass answer cached as '{paths[0]}'; rerun with --no-cache to "
                              "fetch it again)") from None
        raise


def read_features(paths: list[Path], grid: Grid, schema: Schema, class_field, margin_px: int,
                  fetch: OsmFetch | None = None, progress: ProgressFn | None = None) -> tuple[FeatureSet, list[str]]:
    """Read and classify the features on (and a margin around) ``grid``.

    With no paths the features are fetched from Overpass (cached); large local
    OSM files are clipped to the area first (cached) when pyosmium is present.
    """
    report = _read_report(paths, margin_bbox_lonlat(grid, margin_px), schema, class_field, fetch or OsmFetch(),
                          progress)
    feats = build_features(report, schema, grid.crs, grid.center_lonlat(), class_field)
    return feats, _feature_warnings(feats, schema)


def union_bbox(boxes: list[BBox]) -> BBox:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def read_feature_pair(paths: list[Path], grid: Grid, generator_grid: Grid, schema: Schema, class_field,
                      margins_px: tuple[int, int], fetch: OsmFetch | None = None, progress: ProgressFn | None = None
                      ) -> tuple[FeatureSet, FeatureSet, list[str]]:
    """The features of the output ``grid`` and of the generator's (canonical) grid, from one read of the
    sources on both grids plus their margins (``margins_px``, each in its grid's pixels): one
    :class:`FeatureSet` in each grid's CRS, both built around the output grid's centre."""
    box = union_bbox([margin_bbox_lonlat(grid, margins_px[0]), margin_bbox_lonlat(generator_grid, margins_px[1])])
    report = _read_report(paths, box, schema, class_field, fetch or OsmFetch(), progress)
    centre = grid.center_lonlat()
    feats, generator_feats = build_feature_sets(report, schema, (grid.crs, generator_grid.crs), centre, class_field)
    return feats, generator_feats, _feature_warnings(feats, schema)


def class_sources(sources: OpenSources, grid: Grid, generator_grid: Grid, schema: Schema,
                  margins_px: tuple[int, int], progress: ProgressFn | None = None
                  ) -> tuple[ClassSource, ClassSource, list[str]]:
    """What the class maps of the output ``grid`` and of the generator's grid are drawn from: the sketch
    placed on ``grid`` (one source for both), or the features read once (:func:`read_feature_pair`)."""
    if sources.sketch is not None:
        sketch = sketch_source(sources.sketch, grid, schema)
        return sketch, sketch, []
    feats, generator_feats, warnings_ = read_feature_pair(sources.paths, grid, generator_grid, schema,
                                                          sources.class_field, margins_px, sources.fetch, progress)
    return VectorClassSource(feats), VectorClassSource(generator_feats), warnings_


def class_source(sources: OpenSources, grid: Grid, schema: Schema, margin_px: int,
                 progress: ProgressFn | None = None) -> tuple[ClassSource, list[str]]:
    """What the class map is drawn from: the sketch placed on ``grid``, or the features read on it with a
    margin of ``margin_px`` pixels; and the warnings for the result."""
    if sources.sketch is not None:
        return sketch_source(sources.sketch, grid, schema), []
    feats, warnings_ = read_features(sources.paths, grid, schema, sources.class_field, margin_px, sources.fetch,
                                     progress)
    return VectorClassSource(feats), warnings_
