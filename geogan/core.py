"""The render core: the one module that wires a render's stages.

A front (:func:`geogan.api.render`, ``geogan render``, the QGIS worker through the API) describes a render as
a :class:`~geogan.settings.RenderRequest` and calls :func:`run`, which loads the class schema and the model,
opens the sources and builds the output grid once (:func:`geogan.inputs.area_grid`), then calls
:func:`render`: the tiling is resolved, the exact tile plan (the ground scale of every tile row, computed
once) is size-checked once before anything is read, the class source is read on the grid with a tile's
margin (or the sketch is placed), the heights are set up, and the job runs in this process
(:func:`geogan.pipeline.render_grid`) or on Dask (:func:`geogan.distributed.render_grid_dask`).
:func:`rasterize` and :func:`rasterize_array` wire the class map alone.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path

from .classes import Schema, load_schema
from .errors import TooLargeError
from .grid import Grid
from .infer import LoadedModel, encode_style, load_model
from .inputs import OpenSources, area_grid, class_source, open_sources, read_features
from .pipeline import (OutputPaths, RenderJob, RenderResult, auto_tile_spec, check_size, make_height_spec, plan_tiles,
                       rasterize_to_file, render_grid)
from .rasterizer import VectorClassSource
from .runtime import frozen_gc
from .settings import (AreaSettings, ModelSettings, OutputSettings, RenderRequest, RenderSettings, RuntimeSettings,
                       SourceSettings, TilingSettings)
from .terrain import DemSource, check_dem_overlaps
from .tiles import TileSpec
from .write import check_outputs

log = logging.getLogger("geogan")

MAX_RASTERIZE_PX = 100_000 ** 2  # the largest class map rasterize writes without --force
MAX_ARRAY_PX = 20_000 ** 2  # the largest class map rasterize_array returns in memory


def load_render_model(settings: ModelSettings, schema: Schema, preloaded: LoadedModel | None = None) -> LoadedModel:
    """The generator (``preloaded`` when given, e.g. by :class:`geogan.api.Renderer`), with the style of
    ``settings.style_ref`` when one is given."""
    loaded = preloaded if preloaded is not None else load_model(settings.name, schema, settings.device,
                                                                compile=settings.compile,
                                                                precision=settings.precision)
    if settings.style_ref is not None:
        loaded = dataclasses.replace(loaded, style=encode_style(loaded, settings.style_ref))
    return loaded


def tile_spec(tiling: TilingSettings, model: LoadedModel, gsd_m: float) -> TileSpec:
    """The tiling for ``model`` at ``gsd_m``: the user's (a multiple of the model's size), or 256 model
    pixels at ``gsd_m`` (:func:`geogan.pipeline.auto_tile_spec`) with the user's overlap if given."""
    if tiling.tile_px is not None:
        spec = tiling.spec()
        spec.check_model(model.size_multiple, model.name)
        return spec
    spec = auto_tile_spec(model, gsd_m)
    return spec if tiling.overlap_px is None else TileSpec(spec.tile_px, int(tiling.overlap_px))


@frozen_gc()  # see geogan.runtime: no whole-heap garbage collection stalls the render
def run(request: RenderRequest, preloaded: LoadedModel | None = None) -> RenderResult:
    """Carry out ``request``: schema, sources, model, outputs checked, the grid (built once), then :func:`render`.

    Everything that can be refused cheaply is refused before the model runs or a byte is written.
    """
    schema = load_schema(request.sources.rules)
    sources = open_sources(request.sources)
    settings, output = request.settings, request.output
    paths = OutputPaths.in_dir(output.out_dir, settings.heights.hillshade)
    model = load_render_model(request.model, schema, preloaded)
    gsd_m = request.area.gsd_m if request.area.gsd_m is not None else model.gsd_m
    explicit = tile_spec(settings.tiling, model, gsd_m) if settings.tiling.tile_px is not None else None
    check_outputs(paths.all(), output.overwrite)
    sources.paths, grid = area_grid(sources.paths, request.area, gsd_m, sources.class_field)
    spec = explicit or tile_spec(settings.tiling, model, gsd_m)  # the GSD is valid now (the grid checked it)
    resolved = dataclasses.replace(settings, tiling=TilingSettings(spec.tile_px, spec.overlap_px))
    return render(sources, grid, model, output, settings=resolved, schema=schema)


def render(sources: OpenSources, grid: Grid, model: LoadedModel, out: OutputSettings, *, settings: RenderSettings,
           schema: Schema) -> RenderResult:
    """Render ``sources`` on ``grid`` with ``model`` into the COGs of ``out``.

    ``settings.tiling`` must be explicit (:func:`tile_spec` resolves the automatic one). The exact tile
    plan is size-checked before the sources are read; warnings (empty area, repaired geometries, DEM
    coverage) come back in the result.
    """
    spec, heights, runtime = settings.tiling.spec(), settings.heights, settings.runtime
    dem_check = check_dem_overlaps(heights.dem, grid) if heights.dem is not None else None
    plan = plan_tiles(grid, spec, model)
    check_size(plan, model, runtime.force, grid=grid, spec=spec, hillshade=heights.hillshade,
               in_memory=out.in_memory)
    feats, warnings_ = class_source(sources, grid, schema, spec.tile_px, runtime.progress)
    paths = OutputPaths.in_dir(out.out_dir, heights.hillshade)
    with (DemSource(heights.dem, reference_grid=grid) if heights.dem is not None else nullcontext()) as dem_src:
        height_spec = make_height_spec(grid, dem_src, heights.canopy, heights.hillshade, plan.centre_gsd_m)
        job = RenderJob(feats, grid, model, schema, paths, spec, plan, height_spec, out.compression,
                        runtime.generator_seed)
        result = _generate(job, runtime)
        if dem_src is not None:
            warnings_.extend(dem_check.warnings + dem_src.warnings())
    result.warnings.extend(warnings_)
    return result


def _generate(job: RenderJob, runtime: RuntimeSettings) -> RenderResult:
    """Run ``job`` in this process, or on Dask when ``runtime`` names a scheduler or a worker count."""
    if not runtime.distributed:
        return render_grid(job, runtime)
    from .distributed import get_client, render_grid_dask

    client = get_client(runtime.scheduler, runtime.workers)
    try:
        return render_grid_dask(job, runtime, client)
    finally:
        if not runtime.scheduler:
            cluster = client.cluster
            client.close()
            cluster.close()
        else:
            client.close()


def rasterize(sources: SourceSettings, area: AreaSettings, out: Path, *, overwrite: bool = False,
              compression: str = "deflate", runtime: RuntimeSettings = RuntimeSettings()) -> Path:
    """Write the class map of ``sources`` on ``area`` (``area.gsd_m`` set) to ``out`` (``compression``
    checked by :func:`geogan.settings.check_compression`); ``runtime``: force, progress, cancel."""
    schema = load_schema(sources.rules)
    opened = open_sources(sources)
    check_outputs([out], overwrite)
    paths, grid = area_grid(opened.paths, area, area.gsd_m, opened.class_field)
    if grid.width * grid.height > MAX_RASTERIZE_PX and not runtime.force:
        raise TooLargeError(f"the class map would be {grid.width}x{grid.height} px; raise --gsd, shrink the bbox "
                            "or pass --force")
    feats, _ = read_features(paths, grid, schema, opened.class_field, 2, opened.fetch, runtime.progress)
    return rasterize_to_file(VectorClassSource(feats), grid, schema, out, progress=runtime.progress,
                             cancel=runtime.cancel, compression=compression)


def rasterize_array(sources: SourceSettings, area: AreaSettings):
    """The class map as an in-memory array: ``(classes uint8 (H, W), grid)``."""
    from .rasterizer import rasterize_classes

    schema = load_schema(sources.rules)
    opened = open_sources(sources)
    paths, grid = area_grid(opened.paths, area, area.gsd_m, opened.class_field)
    if grid.width * grid.height > MAX_ARRAY_PX:
        raise TooLargeError("this grid is too large for an in-memory array; use rasterize(..., out=PATH)")
    feats, _ = read_features(paths, grid, schema, opened.class_field, 2, opened.fetch)
    return rasterize_classes(feats, grid), grid
