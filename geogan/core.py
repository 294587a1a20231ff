"""The render core: the one module that wires a render's stages.

A front (:func:`geogan.api.render`, ``geogan render``, the QGIS worker through the API) describes a render as
a :class:`~geogan.settings.RenderRequest` and calls :func:`run`, which loads the class schema and the model,
opens the sources and builds the output grid once (:func:`geogan.inputs.area_grid`), then calls
:func:`render`: the tiling is resolved (in model pixels), the canonical grid the generator runs on is placed
(:func:`geogan.anchor.canonical_grid`: world-aligned, the model's native GSD, the UTM zone of the output's
centre), its tile plan is size-checked once before anything is read, the sources are read once and drawn on
both grids (or the sketch is placed), the heights are set up, and the job runs in this process
(:func:`geogan.pipeline.render_grid`) or on Dask (:func:`geogan.distributed.render_grid_dask`); the
canonical strips are warped onto the output grid as they come (:class:`geogan.warp.StripWarper`).
:func:`rasterize` and :func:`rasterize_array` wire the class map alone.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path

from .anchor import canonical_grid, world_offset
from .classes import Schema, load_schema
from .coverage import NODATA_CLASS, area_coverage
from .errors import InputError, TooLargeError
from .grid import Grid
from .infer import LoadedModel, encode_style, load_model
from .inputs import OpenSources, area_grid, class_sources, open_sources, read_features
from .pipeline import (MODEL_TILE_PX, GeneratorFrame, OutputPaths, RenderJob, RenderResult, centre_gsd_m, check_size,
                       make_height_spec, native_plan, rasterize_to_file, render_grid)
from .provenance import Provenance, output_tags
from .rasterizer import VectorClassSource
from .runtime import frozen_gc
from .sources import is_osm_path
from .settings import (AreaSettings, ModelSettings, OutputSettings, RenderRequest, RenderSettings, RuntimeSettings,
                       SourceSettings, TilingSettings, check_fill)
from .terrain import DemSource, check_dem_overlaps
from .terrain_render import terrain_dem
from .tiles import TileSpec
from .write import check_outputs
from .zoo import pick_for_gsd

log = logging.getLogger("geogan")

MAX_RASTERIZE_PX = 100_000 ** 2  # the largest class map rasterize writes without --force
MAX_ARRAY_PX = 20_000 ** 2  # the largest class map rasterize_array returns in memory
FEATURE_MARGIN_PX = 16  # output pixels of features read around the output grid (the canonical grid reads more)


def load_render_model(settings: ModelSettings, schema: Schema, preloaded: LoadedModel | None = None) -> LoadedModel:
    """The generator (``preloaded`` when given, e.g. by :class:`geogan.api.Renderer`), with the style of
    ``settings.style_ref`` when one is given."""
    loaded = preloaded if preloaded is not None else load_model(settings.name, schema, settings.device,
                                                                compile=settings.compile,
                                                                precision=settings.precision,
                                                                runtime=settings.runtime)
    if settings.style_ref is not None and loaded.runtime == "quilt":
        if not settings.style_colours:
            raise InputError(f"model '{loaded.name}' is a texture bank (real photo patches): a reference photo "
                             "changes it only through its colours; add --style-colours, or use --model style")
        from .optional import require_torch

        require_torch("--style-ref")  # geogan.style_reference reads the photo with torch
        from .style_reference import read_style_reference

        return dataclasses.replace(loaded, reference_colours=read_style_reference(loaded, settings.style_ref))
    if settings.style_ref is not None:
        from .style_reference import read_style_reference

        colours = read_style_reference(loaded, settings.style_ref) if settings.style_colours else None
        loaded = dataclasses.replace(loaded, style=encode_style(loaded, settings.style_ref),
                                     reference_colours=colours)
    return loaded


def colour_transfer(model: LoadedModel, schema: Schema, generator_feats, canonical_grid: Grid, tile_px: int):
    """The per-class colour shift toward the ``--style-ref`` photo's colours, measured once per render on the
    render's own area (:mod:`geogan.style_reference`), or None without a reference."""
    colours = getattr(model, "reference_colours", None)
    if colours is None:
        return None
    from .style_reference import area_layouts, colour_transfer_for

    return colour_transfer_for(model, schema, colours, area_layouts(generator_feats, canonical_grid, tile_px))


def pyramid_model(settings: ModelSettings, schema: Schema, gsd_m: float | None,
                  preloaded: LoadedModel | None = None) -> LoadedModel:
    """The model to draw an output of ``gsd_m`` ground metres per pixel with: the pyramid member of the named
    model whose native GSD is the coarsest not above ``gsd_m`` (:func:`geogan.zoo.pick_for_gsd`), so the
    generator's pixels follow the output's; the named (or ``preloaded``) model itself when none fits, when
    ``gsd_m`` is None (its native GSD) or when it was given by path."""
    name = settings.name if gsd_m is None else pick_for_gsd(settings.name, gsd_m)
    if name == settings.name:
        return load_render_model(settings, schema, preloaded)
    log.info("drawing %g m pixels with pyramid member '%s' of '%s'", gsd_m, name, settings.name)
    return load_render_model(dataclasses.replace(settings, name=name), schema)


def tile_spec(tiling: TilingSettings, model: LoadedModel) -> TileSpec:
    """The tiling of the canonical grid, in model pixels: the user's (a multiple of the model's size), or the
    model's training tile (card ``train_tile_px``, default 256) with a quarter overlap (or the user's)."""
    if tiling.tile_px is not None:
        spec = tiling.spec()
        spec.check_model(model.size_multiple, model.name)
        return spec
    tile = int(model.card.get("train_tile_px", MODEL_TILE_PX))
    return TileSpec(tile, tile // 4 if tiling.overlap_px is None else int(tiling.overlap_px))


@frozen_gc()  # see geogan.runtime: no whole-heap garbage collection stalls the render
def run(request: RenderRequest, preloaded: LoadedModel | None = None) -> RenderResult:
    """Carry out ``request``: schema, sources, model, outputs checked, the grid (built once), then :func:`render`.

    Everything that can be refused cheaply is refused before the model runs or a byte is written.
    """
    schema = load_schema(request.sources.rules)
    sources = open_sources(request.sources)
    settings, output = request.settings, request.output
    model = pyramid_model(request.model, schema, request.area.gsd_m, preloaded)
    gsd_m = request.area.gsd_m if request.area.gsd_m is not None else model.gsd_m
    spec = tile_spec(settings.tiling, model)
    check_outputs(output_files(output, settings.heights.hillshade), output.overwrite)
    if output.mesh and not sources.paths:
        raise InputError("--mesh needs vector source files (--osm): a scene is built from their buildings")
    if output.mesh:
        check_outputs([output.out_dir / SCENE_NAME], output.overwrite)
    sources.paths, grid = area_grid(sources.paths, request.area, gsd_m, sources.class_field)
    if request.area.res is not None:  # --res: the output's ground GSD is known once the grid is
        ground_m = float(sum(centre_gsd_m(grid)) / 2)
        if pick_for_gsd(request.model.name, ground_m) != request.model.name:
            model = pyramid_model(request.model, schema, ground_m)
            spec = tile_spec(settings.tiling, model)
    resolved = dataclasses.replace(settings, tiling=TilingSettings(spec.tile_px, spec.overlap_px))
    result = render(sources, grid, model, output, settings=resolved, schema=schema)
    if output.mesh:
        result.scene = _write_scene(sources, result, request, output)
    return result


SCENE_NAME = "scene.glb"


def output_paths(out: OutputSettings, hillshade: bool) -> OutputPaths:
    """The COGs in ``out.out_dir``, or with ``out.blocks_out`` the mosaic index written there
    (:func:`geogan.blocks_index.index_paths`: the blocks' COGs are in ``blocks_out``)."""
    if out.blocks_out is None:
        return OutputPaths.in_dir(out.out_dir, hillshade)
    from .blocks_index import index_paths
    return index_paths(out.out_dir, hillshade)


def output_files(out: OutputSettings, hillshade: bool) -> list[Path]:
    """The files a render writes into ``out.out_dir`` (checked before any work)."""
    if out.blocks_out is None:
        return output_paths(out, hillshade).all()
    from .blocks_index import index_files
    return index_files(out.out_dir, hillshade)


def _write_scene(sources: OpenSources, result: RenderResult, request: RenderRequest, output: OutputSettings) -> Path:
    """``scene.glb`` from the rasters just written (a failure says they were written)."""
    from .errors import GeoganError, RenderError
    from .scene import export_scene

    try:
        return export_scene(sources.paths, result.aerial, result.height, output.out_dir / SCENE_NAME,
                            dem_path=request.settings.heights.dem, classes_path=result.classes,
                            rules=request.sources.rules, overwrite=True).path
    except GeoganError as exc:
        raise RenderError(f"the rasters were written, but not {SCENE_NAME}: {exc}") from None


def render(sources: OpenSources, grid: Grid, model: LoadedModel, out: OutputSettings, *, settings: RenderSettings,
           schema: Schema) -> RenderResult:
    """Render ``sources`` on ``grid`` with ``model`` into the COGs of ``out``.

    ``settings.tiling`` must be explicit, in model pixels (:func:`tile_spec` resolves the automatic one). The
    generator runs on the canonical grid of ``grid`` (:func:`geogan.anchor.canonical_grid`), whose exact tile
    plan is size-checked before the sources are read; warnings (empty area, repaired geometries, DEM
    coverage) come back in the result.
    """
    spec, heights, runtime = settings.tiling.spec(), settings.heights, settings.runtime
    dem_check = check_dem_overlaps(heights.dem, grid) if heights.dem is not None else None
    canonical = canonical_grid(grid, model.gsd_m, spec.tile_px, spec.stride_px)
    plan = native_plan(canonical.grid, spec)
    check_size(plan, model, runtime.force, grid=canonical.grid, spec=spec, hillshade=heights.hillshade,
               in_memory=out.in_memory, out_grid=grid)
    feats, generator_feats, warnings_ = class_sources(sources, grid, canonical.grid, schema,
                                                      (FEATURE_MARGIN_PX, spec.tile_px // 2), runtime.progress)
    coverage, cover_warnings = area_coverage(_coverage_files(sources), grid, out.fill,
                                             getattr(feats, "features", None))
    warnings_.extend(cover_warnings)
    frame = GeneratorFrame(generator_feats, canonical.grid, canonical.offset_rc)
    colour = colour_transfer(model, schema, generator_feats, canonical.grid, spec.tile_px)
    paths = output_paths(out, heights.hillshade)
    with terrain_dem(heights.dem, generator_feats, canonical.grid, model, spec, runtime.generator_seed,
                     canonical.offset_rc) as dem_path, \
            (DemSource(dem_path, reference_grid=grid) if dem_path is not None else nullcontext()) as dem_src:
        if dem_src is not None and isinstance(feats, VectorClassSource):
            feats = feats.standing_on(dem_src)  # one base elevation per building (the lowest DEM under it)
        height_spec = make_height_spec(grid, dem_src, heights.canopy, heights.hillshade, centre_gsd_m(grid),
                                       world_offset(grid))
        job = RenderJob(feats, grid, model, schema, paths, spec, plan, height_spec, out.compression,
                        runtime.generator_seed, frame, render_tags(model, runtime.seed, sources), colour,
                        coverage=coverage)
        result = _generate(job, runtime, out)
        if dem_check is not None:
            warnings_.extend(dem_check.warnings + dem_src.warnings())
    result.warnings.extend(warnings_)
    return result


def _generate(job: RenderJob, runtime: RuntimeSettings, out: OutputSettings) -> RenderResult:
    """Run ``job`` in this process, or on Dask when ``runtime`` names a scheduler or a worker count (the
    workers writing the blocks themselves with ``out.blocks_out``, :mod:`geogan.blocks`)."""
    if not runtime.distributed:
        return render_grid(job, runtime)
    from .blocks import render_grid_blocks
    from .distributed import get_client, render_grid_dask

    client = get_client(runtime.scheduler, runtime.workers)
    try:
        if out.blocks_out is not None:
            return render_grid_blocks(job, runtime, client, out.blocks_out, overwrite=out.overwrite)
        return render_grid_dask(job, runtime, client)
    finally:
        if not runtime.scheduler:
            cluster = client.cluster
            client.close()
            cluster.close()
        else:
            client.close()


def rasterize(sources: SourceSettings, area: AreaSettings, out: Path, *, overwrite: bool = False,
              compression: str = "deflate", runtime: RuntimeSettings = RuntimeSettings(),
              fill: str = "nodata") -> Path:
    """Write the class map of ``sources`` on ``area`` (``area.gsd_m`` set) to ``out`` (``compression``
    checked by :func:`geogan.settings.check_compression`); ``runtime``: force, progress, cancel; ``fill``:
    outside the data's coverage "nodata" (``NODATA_CLASS``) or "background" (:mod:`geogan.coverage`)."""
    fill = check_fill(fill)
    schema = load_schema(sources.rules)
    opened = open_sources(sources)
    check_outputs([out], overwrite)
    paths, grid = area_grid(opened.paths, area, area.gsd_m, opened.class_field)
    if grid.width * grid.height > MAX_RASTERIZE_PX and not runtime.force:
        raise TooLargeError(f"the class map would be {grid.width}x{grid.height} px; raise --gsd, shrink the bbox "
                            "or pass --force")
    feats, _ = read_features(paths, grid, schema, opened.class_field, 2, opened.fetch, runtime.progress)
    tags = output_tags(Provenance(0, _osm_used(opened)))
    coverage, _ = area_coverage(_coverage_files(opened, paths), grid, fill, feats)
    return rasterize_to_file(VectorClassSource(feats), grid, schema, out, progress=runtime.progress,
                             cancel=runtime.cancel, compression=compression, tags=tags, coverage=coverage)


def _coverage_files(sources: OpenSources, paths: list[Path] | None = None) -> list[Path]:
    """The source files whose coverage masks the outputs (:mod:`geogan.coverage`): none when GeoDataFrames
    were given (features chosen in memory: no mask)."""
    return [] if sources.keep is not None else list(sources.paths if paths is None else paths)


def _osm_used(sources: OpenSources) -> bool:
    """Whether OSM data is drawn: OSM files, or (no files, no sketch) an Overpass download."""
    if sources.sketch is not None:
        return False
    return not sources.paths or any(is_osm_path(p) for p in sources.paths)


def render_tags(model: LoadedModel, seed: int, sources: OpenSources) -> dict[str, str]:
    """The provenance every output of a render carries (:func:`geogan.provenance.output_tags`)."""
    osm_used = _osm_used(sources)
    if model.card_path is not None and Path(model.card_path).is_file():
        return output_tags(Provenance.from_card(model.card_path, seed, osm_used))
    return output_tags(Provenance(seed, osm_used, model.name, model_licence=model.card.get("license")))


def rasterize_array(sources: SourceSettings, area: AreaSettings, fill: str = "nodata"):
    """The class map as an in-memory array: ``(classes uint8 (H, W), grid)``; outside the data's coverage
    ``NODATA_CLASS`` (``fill="nodata"``) or background (``fill="background"``)."""
    from .rasterizer import rasterize_classes

    fill = check_fill(fill)
    schema = load_schema(sources.rules)
    opened = open_sources(sources)
    paths, grid = area_grid(opened.paths, area, area.gsd_m, opened.class_field)
    if grid.width * grid.height > MAX_ARRAY_PX:
        raise TooLargeError("this grid is too large for an in-memory array; use rasterize(..., out=PATH)")
    feats, _ = read_features(paths, grid, schema, opened.class_field, 2, opened.fetch)
    classes = rasterize_classes(feats, grid)
    coverage, _ = area_coverage(_coverage_files(opened, paths), grid, fill, feats)
    if coverage is not None:
        classes[~coverage.rows(0, grid.height)] = NODATA_CLASS
    return classes, grid
