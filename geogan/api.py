"""The public Python API: :func:`render` and :func:`rasterize`.

Both take plain values (paths, a bbox, CRS strings, a GSD in ground metres),
validate everything before any heavy work, and report progress through
``progress(fraction, message)`` and stop when ``cancel()`` returns True. The
CLI, the QGIS plugin and the Dask front are thin layers over these.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import pyproj

from .classes import Schema, load_schema
from .errors import GridError, InputError, SourceError, TooLargeError
from .features import FeatureSet, build_features
from .grid import Grid, grid_from_bbox, user_crs
from .infer import LoadedModel, encode_style, load_model
from .zoo import resolve_model
from .runtime import frozen_gc
from .rasterizer import VectorClassSource
from .pipeline import (CancelFn, OutputPaths, ProgressFn, RenderResult, auto_tile_spec, check_compression, check_size,
                       make_height_spec, quick_estimate, rasterize_to_file, render_grid)
from .overpass import clip_large_osm, fetch_osm
from .sketch import sketch_source
from .sources import data_bounds_lonlat, is_osm_path, osm_file_bounds, read_sources
from .terrain import CanopyParams, DemSource, check_dem_overlaps
from .tiles import TileSpec
from .write import check_outputs

log = logging.getLogger("geogan")

PathLike = str | os.PathLike
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class OsmFetch:
    """Where OSM data comes from when no file is given: an Overpass endpoint and an on-disk cache."""

    url: str | None = None  # default: $GEOGAN_OVERPASS_URL, else the public instance
    cache_dir: PathLike | None = None  # default: $XDG_CACHE_HOME/geogan or ~/.cache/geogan
    use_cache: bool = True
MAX_RASTERIZE_PX = 100_000 ** 2


# ---------------------------------------------------------------- checks at the API boundary
def _check_gsd_type(gsd_m) -> None:
    if gsd_m is not None and (isinstance(gsd_m, bool) or not isinstance(gsd_m, numbers.Real)):
        raise GridError(f"gsd_m={gsd_m!r} is a {type(gsd_m).__name__}, not a number; give ground metres per pixel "
                        "as a number, e.g. gsd_m=0.5 (--gsd 0.5)")


def _check_whole(value, name: str, option: str, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}={value!r} is not a whole number; give an integer, e.g. {option}")
    if value < minimum:
        raise InputError(f"{name}={value} must be {minimum} or more, e.g. {option}")


def _check_callback(fn, name: str, signature: str) -> None:
    if fn is not None and not callable(fn):
        raise InputError(f"{name}={fn!r} is not callable; pass a function {signature} or None")


def _check_render_args(gsd_m, seed, tile_px, overlap_px, workers, progress, cancel) -> None:
    """Types and ranges of render()'s plain arguments: one-line InputErrors instead of TypeErrors later."""
    _check_gsd_type(gsd_m)
    _check_whole(seed, "seed", "seed=0 (--seed 0); any integer 0 or more gives its own repeatable render", 0)
    _check_whole(tile_px, "tile_px", "tile_px=256 (--tile-size 256)", 1)
    _check_whole(overlap_px, "overlap_px", "overlap_px=64 (--overlap 64)", 0)
    if workers is not None:
        _check_whole(workers, "workers", "workers=2 (--workers 2: a local Dask cluster of 2 processes); leave it "
                     "out to render in this process", 1)
    _check_callback(progress, "progress", "progress(fraction, message)")
    _check_callback(cancel, "cancel", "cancel() -> bool")


def generator_seed(seed: int) -> int:
    """The 32-bit seed that noise, tile orientations and canopy take for a user's ``seed`` (any integer >= 0).

    Seeds below 2**32 are used as they are (renders made with them stay the same); a larger seed is
    hashed with numpy's SeedSequence, so seeds no longer repeat every 2**32 (2**32 gave seed 0's render)
    and 2**70 no longer overflows. Two seeds may still share a 32-bit seed by chance (one pair in 2**32).
    """
    seed = int(seed)
    if seed < 2**32:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def sample_osm_path() -> Path:
    """The bundled fictional sample town (OSM XML)."""
    return Path(str(resources.files("geogan").joinpath("data/sample/sample_town.osm")))


def _as_paths(osm: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if osm is None:
        return []
    if isinstance(osm, (str, os.PathLike)):
        return [Path(osm)]
    return [Path(p) for p in osm]


def _resolve_sources(osm, bbox, bbox_crs) -> tuple[list[Path], BBox | None, str]:
    paths = _as_paths(osm)
    if not paths:
        if bbox is not None:
            return [], bbox, bbox_crs  # fetched from Overpass once the grid is known
        sample = sample_osm_path()
        bounds = osm_file_bounds(sample)
        return [sample], bounds, "EPSG:4326"
    if bbox is None and len(paths) == 1:
        bounds = osm_file_bounds(paths[0]) if paths[0].is_file() else None
        if bounds is not None:
            return paths, bounds, "EPSG:4326"
    return paths, bbox, bbox_crs


def _margin_bbox_lonlat(grid: Grid, margin_px: int) -> BBox:
    """Grid bounds plus a margin (tile context beyond the edges), in lon/lat."""
    left, bottom, right, top = grid.bounds
    rx, ry = grid.res_xy
    box = (left - margin_px * rx, bottom - margin_px * ry, right + margin_px * rx, top + margin_px * ry)
    t = pyproj.Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return tuple(float(v) for v in t.transform_bounds(*box, densify_pts=21))  # type: ignore[return-value]


def _grid(osm, bbox, bbox_crs, crs, gsd_m, class_field) -> tuple[list[Path], Grid]:
    """Sources and the output grid (reads the data only when no bbox is known)."""
    paths, bbox, bbox_crs = _resolve_sources(osm, bbox, bbox_crs)
    if bbox is None:
        report = read_sources(paths, None, class_field)
        bbox, bbox_crs = data_bounds_lonlat(report), "EPSG:4326"
    return paths, grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m)  # type: ignore[arg-type]


def _features(paths: list[Path], grid: Grid, schema: Schema, class_field, margin_px: int,
              fetch: OsmFetch | None = None, progress: ProgressFn | None = None) -> tuple[FeatureSet, list[str]]:
    """Read and classify the features on (and a margin around) ``grid``.

    With no paths the features are fetched from Overpass (cached); large local
    OSM files are clipped to the area first (cached) when pyosmium is present.
    """
    fetch = fetch or OsmFetch()
    margin_bbox = _margin_bbox_lonlat(grid, margin_px)
    fetched = not paths
    if fetched:
        paths = [fetch_osm(margin_bbox, schema, url=fetch.url, cache_dir=fetch.cache_dir, use_cache=fetch.use_cache,
                           progress=progress)]
    else:
        paths = [clip_large_osm(p, margin_bbox, cache_dir=fetch.cache_dir, use_cache=fetch.use_cache)
                 if p.is_file() and is_osm_path(p) else p for p in paths]
    warnings_: list[str] = []
    try:
        report = read_sources(paths, margin_bbox, class_field)
    except SourceError as exc:
        if fetched:
            raise SourceError(f"{exc} (the Overpass answer cached as '{paths[0]}'; rerun with --no-cache to "
                              "fetch it again)") from None
        raise
    feats = build_features(report, schema, grid.crs, grid.center_lonlat(), class_field)
    if len(feats) == 0:
        msg = "the bbox holds no mapped features; rendering it as background"
        log.warning(msg)
        warnings_.append(msg)
    if feats.repaired or feats.skipped:
        msg = f"{feats.repaired} broken geometries repaired, {feats.skipped} skipped (unclosed or clipped rings)"
        log.warning(msg)
        warnings_.append(msg)
    log.info("%d features drawn: %s", len(feats),
             ", ".join(f"{schema.by_id(k).name} {v}" for k, v in sorted(feats.counts_by_class.items())))
    return feats, warnings_


@frozen_gc()  # see geogan.runtime: no whole-heap garbage collection stalls the render
def render(osm: PathLike | Sequence[PathLike] | None = None, bbox: BBox | None = None, bbox_crs: str = "EPSG:4326",
           crs: str = "EPSG:3857", gsd_m: float | None = None, out_dir: PathLike | None = "out", model: str = "default",
           device: str = "auto", tile_px: int | None = None, overlap_px: int | None = None, seed: int = 0,
           overwrite: bool = False,
           rules: PathLike | None = None, force: bool = False, class_field: str | None = None,
           dem: PathLike | None = None, hillshade: bool = False, canopy: CanopyParams | None = None,
           scheduler: str | None = None, workers: int | None = None, osm_fetch: OsmFetch | None = None,
           sketch: PathLike | None = None, style_ref: PathLike | None = None, progress: ProgressFn | None = None,
           cancel: CancelFn | None = None, compile: bool = False, compression: str = "deflate",
           precision: str = "auto", _preloaded: LoadedModel | None = None, _in_memory: bool = False):
    """Render synthetic aerial imagery, heights and a class map for an area.

    Parameters
    ----------
    osm : path or paths to vector sources (OSM .osm/.pbf, GPKG, GeoJSON, Shapefile);
        None with ``bbox=None`` renders the bundled sample town; None with a bbox fetches the area
        from an Overpass API (see ``osm_fetch``: endpoint and cache).
    bbox : (xmin, ymin, xmax, ymax) in ``bbox_crs``; None = the data's extent.
    crs : output CRS. gsd_m : output pixel size in *ground* metres (default: the model's native GSD).
    out_dir : directory receiving aerial.tif, height.tif, classes.tif (COGs); None returns an
        ``xarray.Dataset`` (``aerial`` (band, y, x), ``height`` (y, x), ``classes`` (y, x); rioxarray CRS).
    osm may also be a GeoDataFrame (any CRS; its ``class`` column, or OSM tag columns, say the class).
    model : a zoo name (``geogan models``) or a path to a model .json/.safetensors.
    device : auto, cpu or cuda. tile_px, overlap_px : tiling in output pixels (default: tiles of 256 model
        pixels at the output GSD, a quarter overlap; :func:`geogan.pipeline.auto_tile_spec`).
    seed : any integer 0 or more; same seed -> identical output (:func:`generator_seed`).
    overwrite : replace existing outputs. rules : a class rules TOML (default: built-in schema).
    force : run even when the estimate is over a day. class_field : attribute with a schema class
        name or id (for hand-drawn layers) instead of OSM tags.
    dem : a DEM raster (any GDAL raster, any CRS): terrain under objects, in the DEM's vertical datum;
        without it the ground is flat at 0. hillshade : also write hillshade.tif (light from the NW).
    canopy : vegetation canopy heights per class (default: woodland 15 m +-30 %, wetland 1 m).
    style_ref : a reference aerial image whose look (colours, texture) the render takes on; needs a model
        trained with a style encoder (``model="style"``).
    sketch : a PNG painted with the class palette, stretched over ``bbox`` (instead of vector sources).
    scheduler : a Dask scheduler address (``tcp://host:8786``) to render blocks of tiles on a cluster;
        workers : or the number of workers of a local Dask cluster. Output equals the local render.
    progress : ``progress(fraction, message)``. cancel : ``cancel() -> bool``, checked once per tile.
    compile : ``torch.compile`` the generator (CUDA graphs on a GPU; local renders, not Dask workers).
    precision : the generator's arithmetic: ``"auto"`` (fp16 on a CUDA GPU, fp32 on CPU), ``"fp32"``,
        ``"bf16"`` (about 1.4x faster on CPUs with AVX512-BF16 or AMX, within about 1 grey level) or
        ``"fp16"`` (GPU only). A half-precision batch that overflows is run again in fp32.
    compression : the COGs' compression: ``"deflate"`` (lossless, read everywhere), ``"zstd"`` (lossless,
        about half the CPU time for the aerial image at the same size; readers need GDAL >= 2.3 / libtiff
        with zstd) or ``"jpeg"`` (aerial and hillshade lossy JPEG quality 90, RGB as YCbCr, several times
        smaller; heights and classes stay lossless DEFLATE).

    Returns
    -------
    RenderResult with the three paths, the grid, tile count and timing (an xarray.Dataset when
    ``out_dir`` is None).
    """
    compression = check_compression(compression)  # before any work
    _check_render_args(gsd_m, seed, tile_px, overlap_px, workers, progress, cancel)
    user_crs(crs, "--crs")
    user_crs(bbox_crs, "--bbox-crs")
    if tile_px is not None:  # check the user's tiling before any work
        spec = TileSpec(int(tile_px), int(overlap_px if overlap_px is not None else int(tile_px) // 4))
    if sketch is not None and (bbox is None or osm is not None):
        raise InputError("a sketch is placed by --bbox and replaces --osm; pass --bbox and no --osm")
    schema = load_schema(rules)
    if out_dir is None:  # notebook use: render into a scratch folder and hand back an xarray.Dataset
        import tempfile

        from .xarray_io import load_dataset
        with tempfile.TemporaryDirectory(prefix="geogan-") as tmp:
            res = render(**{**locals_for_render(locals()), "out_dir": tmp, "overwrite": True, "_in_memory": True})
            return load_dataset(res)
    osm, class_field, _keep = materialize_sources(osm, class_field)
    paths = OutputPaths.in_dir(Path(out_dir), hillshade)
    loaded = _preloaded if _preloaded is not None else load_model(model, schema, device, compile=compile,
                                                                  precision=precision)
    if style_ref is not None:
        loaded = dataclasses.replace(loaded, style=encode_style(loaded, style_ref))
    gsd_m = gsd_m if gsd_m is not None else loaded.gsd_m
    if tile_px is not None:
        spec.check_model(loaded.size_multiple, loaded.name)
    check_outputs(paths.all(), overwrite)
    if sketch is not None:
        grid = grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m)  # type: ignore[arg-type]
    else:
        paths_in, grid = _grid(osm, bbox, bbox_crs, crs, gsd_m, class_field)
    if tile_px is None:  # the GSD is valid now (the grid checked it)
        spec = auto_tile_spec(loaded, gsd_m)
        if overlap_px is not None:
            spec = TileSpec(spec.tile_px, int(overlap_px))
    dem_check = check_dem_overlaps(dem, grid) if dem is not None else None
    check_size(quick_estimate(grid, spec, loaded), loaded, force, grid=grid, spec=spec, hillshade=hillshade,
               in_memory=_in_memory)
    if sketch is not None:
        feats, warnings_ = sketch_source(sketch, grid, schema), []
    else:
        feats, warnings_ = _features(paths_in, grid, schema, class_field, spec.tile_px, osm_fetch, progress)
        feats = VectorClassSource(feats)
    with (DemSource(dem, reference_grid=grid) if dem is not None else nullcontext()) as dem_src:
        heights = make_height_spec(grid, dem_src, canopy, hillshade)
        result = _run(feats, grid, loaded, model, schema, paths, spec, generator_seed(seed), force, heights,
                      scheduler, workers, progress, cancel, compression)
        if dem_src is not None:
            warnings_.extend(dem_check.warnings + dem_src.warnings())
    result.warnings.extend(warnings_)
    return result


def locals_for_render(scope: dict) -> dict:
    """The keyword arguments of :func:`render` from its own ``locals()``."""
    import inspect
    return {k: scope[k] for k in inspect.signature(render).parameters if k in scope}


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


def materialize_sources(osm, class_field: str | None):
    """Check the vector sources; GeoDataFrames (alone, or in a list with each other and with paths) become
    temporary GeoPackages, kept alive by the returned handle. Returns ``(osm, class_field, handle)``."""
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
    if class_field is None and all(kind == "geo" and "class" in item.columns for item, kind in zip(items, kinds)):
        class_field = "class"
    return paths, class_field, tmp


class Renderer:
    """Loads a model once and renders many areas (what long-lived fronts use).

    >>> r = Renderer(model="default", device="auto")
    >>> r.render(osm="town.osm", out_dir="a"); r.render(osm="town.osm", bbox=..., out_dir="b")
    """

    def __init__(self, model: str = "default", device: str = "auto", rules: PathLike | None = None,
                 precision: str = "auto") -> None:
        self.model_name, self.rules = model, rules
        self.loaded = load_model(model, load_schema(rules), device, precision=precision)

    def render(self, **kwargs) -> RenderResult:
        kwargs.setdefault("rules", self.rules)
        return render(model=self.model_name, _preloaded=self.loaded, **kwargs)


def _run(feats, grid, loaded, model, schema, paths, spec, seed, force, heights, scheduler, workers, progress,
         cancel, compression: str = "deflate") -> RenderResult:
    if scheduler or workers is not None:
        from .distributed import get_client, render_grid_dask

        client = get_client(scheduler, workers)
        try:
            return render_grid_dask(feats, grid, loaded, str(resolve_model(model)), schema, paths, spec=spec,
                                    client=client, seed=seed, force=force, heights=heights, progress=progress,
                                    cancel=cancel, compression=compression)
        finally:
            if not scheduler:
                cluster = client.cluster
                client.close()
                cluster.close()
            else:
                client.close()
    return render_grid(feats, grid, loaded, schema, paths, spec=spec, seed=seed, force=force, heights=heights,
                       progress=progress, cancel=cancel, compression=compression)


def rasterize(osm: PathLike | Sequence[PathLike] | None = None, bbox: BBox | None = None,
              bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float = 0.5,
              out: PathLike = "classes.tif", rules: PathLike | None = None, class_field: str | None = None,
              overwrite: bool = False, force: bool = False, osm_fetch: OsmFetch | None = None,
              progress: ProgressFn | None = None, cancel: CancelFn | None = None,
              compression: str = "deflate") -> Path:
    """Rasterize vector sources into a class-map COG (uint8 with the schema palette). Same parameters as render
    (``compression``: "deflate" or "zstd"; the class map is never lossy, so "jpeg" writes DEFLATE)."""
    compression = check_compression(compression)  # before any work
    _check_gsd_type(gsd_m)
    _check_callback(progress, "progress", "progress(fraction, message)")
    _check_callback(cancel, "cancel", "cancel() -> bool")
    user_crs(crs, "--crs")
    user_crs(bbox_crs, "--bbox-crs")
    schema = load_schema(rules)
    osm, class_field, _keep = materialize_sources(osm, class_field)
    out = Path(out)
    check_outputs([out], overwrite)
    paths_in, grid = _grid(osm, bbox, bbox_crs, crs, gsd_m, class_field)
    if grid.width * grid.height > MAX_RASTERIZE_PX and not force:
        raise TooLargeError(f"the class map would be {grid.width}x{grid.height} px; raise --gsd, shrink the bbox "
                            "or pass --force")
    feats, _ = _features(paths_in, grid, schema, class_field, 2, osm_fetch, progress)
    return rasterize_to_file(VectorClassSource(feats), grid, schema, out, progress=progress, cancel=cancel,
                             compression=compression)


def rasterize_array(osm, bbox: BBox | None = None, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857",
                    gsd_m: float = 0.5, rules: PathLike | None = None, class_field: str | None = None,
                    osm_fetch: OsmFetch | None = None):
    """Class map as an in-memory array: returns ``(classes uint8 (H, W), grid)``."""
    from .rasterizer import rasterize_classes

    schema = load_schema(rules)
    osm, class_field, _keep = materialize_sources(osm, class_field)
    paths_in, grid = _grid(osm, bbox, bbox_crs, crs, gsd_m, class_field)
    if grid.width * grid.height > 20_000 ** 2:
        raise TooLargeError("this grid is too large for an in-memory array; use rasterize(..., out=PATH)")
    feats, _ = _features(paths_in, grid, schema, class_field, 2, osm_fetch)
    return rasterize_classes(feats, grid), grid
